"""Training on the real logs as a user runs it: `python -m gender train`, in a process of its own.

    .venv/bin/python benchmarks/training.py [--mysql] [--model-dir DIR] [--synthetic N]

Runs `python -m gender train --db URL --model-dir DIR` exactly as a user types it and measures
the command from the outside (os.wait4's usage of the child: wall time, CPU, peak RSS). Its parts
(each candidate's 5-fold cross-validation, each final fit) come from the model card it writes: they
are parts of that one command, not commands of their own. The models it writes are the ones
lookup.py uses. There is no original figure for this; the original re-creation's own
cross-validation is one of the parts.
"""

from __future__ import annotations

from pathlib import Path

import common
from common import gender, ms, run, table, uptime

from gender import artifact


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
    url = engine.url.render_as_string(hide_password=False)
    engine.dispose()
    common.header("Training: `python -m gender train`, as a user runs it", engine)
    print(f"uptime at start: {uptime()}\n", flush=True)

    result = run("train", gender("train", "--db", url, "--model-dir", str(args.model_dir)))
    card = artifact.load_card(args.model_dir)
    total = result["wall"]

    # The parts run side by side on a pool of one thread per core: each is its own thread's time,
    # so they add up to about the cores' time, not to the command's wall time.
    rows = [
        [f"part: 5-fold CV, {name} (its 5 folds' thread time)", ms(r.cv_seconds)] for name, r in card.candidates.items()
    ]
    rows += [
        [
            f"part: final fit, {entry.candidate} ({slot}, {entry.fitted_sessions:,} sessions)",
            ms(entry.fit_seconds),
        ]
        for slot, entry in card.slots.items()
    ]
    rows.append(["**`python -m gender train`, the command (wall)**", f"**{ms(total)}**"])
    cv = card.cv
    compared = f"a stratified sample of {cv.sessions:,}" if cv.sampled else f"all {cv.sessions:,}"
    print(f"## {card.training.sessions:,} labelled sessions; candidates compared on {compared}\n")
    print(table(["step", "time"], rows))
    print(
        f"\nthe command: wall {ms(total)}, CPU {result['cpu']:.0f} s (user+sys), peak RSS {result['rss_mb']:,.0f} MB, "
        f"load {result['load'][0]:.1f} → {result['load'][1]:.1f}"
    )
    print(
        "CV ROC-AUC: "
        + ", ".join(f"{name} {r.auc_mean:.4f}" for name, r in card.candidates.items())
        + f"; chosen: {card.chosen}; models written to {args.model_dir}"
    )
    print("\n`train`'s own report (stderr, last lines):\n")
    print("\n".join("    " + line for line in result["stderr"].strip().splitlines()[-7:]))
    print(f"\nuptime at end: {uptime()}")
    common.footer()


if __name__ == "__main__":
    main()
