"""Training on the real logs: every candidate's 5-fold cross-validation and the final fits.

    .venv/bin/python benchmarks/training.py [--mysql] [--model-dir DIR] [--synthetic N]

Runs `gender.train.train` exactly as `python -m gender train` does and reports its wall time,
split by the progress it reports (the read, each candidate's folds, each final fit), and the
process's peak RSS. The models it writes are the ones lookup.py uses. There is no original
figure for this; the original re-creation's own cross-validation is one of the rows.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import common
from common import ms, table

from gender import train


def main() -> None:
    parser = common.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="where models go [data/bench/models-pakdd or -synth_N]")
    parser.add_argument("--synthetic", help="train on a synthetic database of this many sessions instead (e.g. 20k)")
    args = parser.parse_args()

    if args.synthetic:
        n = common.sizes(args.synthetic)[0]
        engine = common.synthetic_engine(n, args.mysql)
        args.model_dir = args.model_dir or common.model_dir_for(f"synth_{n}")
    else:
        engine = common.real_engine(args.mysql)
        args.model_dir = args.model_dir or common.model_dir_for("pakdd")
    common.header("Training: all candidates' CV + final fit", engine)

    marks: list[tuple[float, str]] = []
    started = time.perf_counter()
    metadata = train.train(
        engine, args.model_dir, lambda _fraction, message: marks.append((time.perf_counter(), message))
    )
    total = time.perf_counter() - started

    # Each progress message closes a step: the time since the previous one is that step's.
    steps: dict[str, float] = {}
    previous = started
    for at, message in marks:
        if message.startswith("training on"):
            name = "read the labelled sessions"
        elif message.startswith("fitted"):
            name = "final fit: " + message.split(" on all")[0].removeprefix("fitted ")
        else:
            name = f"5-fold CV: {message.split(':')[0]}"
        steps[name] = steps.get(name, 0.0) + at - previous
        previous = at
    rows = [[name, ms(seconds), f"{seconds / total:.0%}"] for name, seconds in steps.items()]
    saving = started + total - previous  # after the last progress message: metadata and files
    rows.append(["saving the models", ms(saving), f"{saving / total:.0%}"])
    rows.append(["**total**", ms(total), "100%"])
    print(f"## {metadata['training']['sessions']:,} labelled sessions, {len(metadata['candidates'])} candidates\n")
    print(table(["step", "wall time", "share"], rows))
    print(
        "\nCV ROC-AUC: "
        + ", ".join(f"{name} {result['auc_mean']:.4f}" for name, result in metadata["candidates"].items())
        + f"; chosen: {metadata['chosen']}"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:,.0f} MB; models written to {args.model_dir}")
    common.footer()


if __name__ == "__main__":
    main()
