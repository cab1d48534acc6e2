"""One lookup as the Predict page does it: queries + features + predict + SHAP for one session.

    .venv/bin/python benchmarks/lookup.py [--mysql] [--lookups 200] [--model-dir DIR]

Warm (the model loaded, its explainer built, the connection pool open), over random sessions
of the real logs, half labelled and half of unknown gender. Ours is `predict.assess` (exactly
what the Predict page calls), also split into its parts, and `predict.predict` (no SHAP). The
baseline is the original's prediction without explanation: the tables held in arrays, a
per-session scan for the session's rows, the original random forest's predict.

The models come from --model-dir (default data/bench/models-pakdd, written by training.py);
without one, the boosted pipeline and the original's forest are fitted directly here.
"""

from __future__ import annotations

import random
from pathlib import Path

import common
from common import median, ms, percentile, ratio, table, timed

from gender import db, predict
from gender.explain import explain_row
from tests import original_style


def main() -> None:
    parser = common.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--lookups", type=int, default=200, help="random sessions looked up")
    parser.add_argument("--model-dir", type=Path, default=common.model_dir_for("pakdd"), help="trained models")
    args = parser.parse_args()

    engine = common.real_engine(args.mysql)
    treatment, control, source = common.load_or_fit_models(engine, args.model_dir)
    common.header("One lookup as the Predict page does it (warm)", engine)
    print(f"models: {source}; ours: {treatment.model_id}, baseline: the original's random forest\n")

    rng = random.Random(0)
    ids = [db.random_session_id(engine, labelled=i % 2 == 0, rng=rng) for i in range(args.lookups)]
    service = original_style.OriginalService(engine, control.pipeline)  # loads the tables, as at start-up
    for session_id in ids[:5]:  # warm: explainer built, imports done, pages cached
        predict.assess(engine, treatment, session_id)
        predict.predict(engine, treatment, session_id)
        service.predict(session_id)

    assess_t, predict_t, base_t = [], [], []
    parts = {
        "queries (lookup)": [],
        "session frame": [],
        "features": [],
        "predict": [],
        "SHAP + labels (explain_row)": [],
    }
    for session_id in ids:
        assess_t.append(timed(predict.assess, engine, treatment, session_id)[0])
        predict_t.append(timed(predict.predict, engine, treatment, session_id)[0])
        base_t.append(timed(service.predict, session_id)[0])
        seconds, record = timed(predict.lookup, engine, session_id)
        parts["queries (lookup)"].append(seconds)
        seconds, frame = timed(getattr, record, "frame")  # a cached property: built on first use
        parts["session frame"].append(seconds)
        seconds, row = timed(treatment.features, frame)
        parts["features"].append(seconds)
        parts["predict"].append(timed(treatment.p_male_of, row)[0])
        parts["SHAP + labels (explain_row)"].append(timed(explain_row, treatment, row)[0])

    def stats(times):
        return [ms(median(times)), ms(percentile(times, 0.95)), ms(max(times))]

    rows = [
        [
            "ours: predict.assess (queries + features + predict + SHAP)",
            *stats(assess_t),
            ratio(median(base_t), median(assess_t)),
        ],
        [
            "ours: predict.predict (queries + features + predict, no SHAP)",
            *stats(predict_t),
            ratio(median(base_t), median(predict_t)),
        ],
        ["original-style: scan + word features + forest predict, no SHAP (baseline)", *stats(base_t), ""],
    ]
    print(f"## {len(ids)} random real sessions\n")
    print(table(["path", "median", "p95", "max", "baseline ÷ ours (medians)"], rows))
    print("\n## predict.assess by part (timed separately, same sessions)\n")
    print(table(["part", "median", "p95", "max"], [[name, *stats(times)] for name, times in parts.items()]))
    common.footer()


if __name__ == "__main__":
    main()
