"""Feature build: our vectorised batch path against the original's per-session scan.

    .venv/bin/python benchmarks/features.py [--mysql] [--repeat 3] [--subsets 1500,3000,6000,12000] [--synthetic 100k]

1. The 12,000 labelled sessions of the real logs, from the database to the feature matrix:
   the original-style scan (load the product table into an array, one scan of it per session,
   the original's 1-3-gram word features); the same features by our batch path
   (`db.read_sessions` + `session_frame` + `OriginalFeatures`), checked to be the same matrix;
   and our own features as training builds them (`SessionFeatures(min_df=1)`).
2. Linear in sessions: both on random samples of the real sessions (the product table shrunk to
   the sample, as a smaller shop would have it), per session.
3. Ours on synthetic databases (cached under data/bench/); the scan's time there is estimated
   from its measured cost per (session × product row), not run.
"""

from __future__ import annotations

import random

import common
from common import median, ms, ratio, table, timed

from gender import db
from gender.features import OriginalFeatures, SessionFeatures, session_frame
from tests import original_style


def ours(engine, features):
    """Database → session frame → feature matrix of the labelled sessions, as training does it."""
    sessions, views = db.read_sessions(engine, "labelled")
    frame = session_frame(sessions, views)
    return features.fit(frame).transform(frame)


def baseline(engine):
    products = original_style.load_product_array(engine)
    sessions = original_style.load_session_array(engine, "labelled")
    return original_style.scan_features(products, sessions), len(products)


def best_of(repeat: int, fn, *args):
    times, result = [], None
    for _ in range(repeat):
        seconds, result = timed(fn, *args)
        times.append(seconds)
    return median(times), result


def main() -> None:
    parser = common.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of our paths (median reported)")
    parser.add_argument("--baseline-repeat", type=int, default=1, help="runs of the per-session scan")
    parser.add_argument("--subsets", default="1500,3000,6000,12000", help="real-session sample sizes")
    parser.add_argument("--synthetic", default="100k", help="synthetic database sizes for ours ('' for none)")
    args = parser.parse_args()

    engine = common.real_engine(args.mysql)
    common.header("Feature build: vectorised batch vs per-session scan", engine)

    # 1. the real logs, whole
    scan_s, (scan_matrix, product_rows) = best_of(args.baseline_repeat, baseline, engine)
    original_s, original_matrix = best_of(args.repeat, ours, engine, OriginalFeatures())
    session_s, session_matrix = best_of(args.repeat, ours, engine, SessionFeatures(min_df=1))
    same = scan_matrix.shape == original_matrix.shape and (scan_matrix != original_matrix).nnz == 0
    sessions = scan_matrix.shape[0]
    print(f"## {sessions:,} labelled real sessions, product table of {product_rows:,} views\n")
    rows = [
        ["original-style: per-session scan + word features (baseline)", ms(scan_s), f"{scan_matrix.shape[1]:,}", ""],
        [
            "ours: batch read + session_frame + OriginalFeatures (same features)",
            ms(original_s),
            f"{original_matrix.shape[1]:,}",
            ratio(scan_s, original_s),
        ],
        [
            "ours: batch read + session_frame + SessionFeatures(min_df=1) (what training builds)",
            ms(session_s),
            f"{session_matrix.shape[1]:,}",
            ratio(scan_s, session_s),
        ],
    ]
    print(table(["path", "time", "columns", "baseline ÷ ours"], rows))
    print(f"\nthe scan's matrix equals OriginalFeatures' batch matrix: {'yes' if same else 'NO'}")
    print(f"ours: median of {args.repeat} runs; baseline: median of {args.baseline_repeat}")
    # the scan's cost per (session × product row), for estimates at sizes where it is not run
    scan_unit = scan_s / (sessions * product_rows)

    # 2. linear in sessions: samples of the real sessions, the product table shrunk with them
    all_sessions, all_views = db.read_sessions(engine, "labelled")
    products = original_style.load_product_array(engine)
    session_rows = original_style.load_session_array(engine, "labelled")
    rng = random.Random(0)
    rows = []
    for n in common.sizes(args.subsets):
        n = min(n, len(all_sessions))
        chosen = sorted(rng.sample(range(len(all_sessions)), n))
        ids = set(all_sessions["session_id"].iloc[chosen])
        sample_sessions = all_sessions.iloc[chosen]
        sample_views = all_views[all_views["session_id"].isin(ids)]
        sample_products = products[[sid in ids for sid in products[:, 0]]]
        sample_rows = session_rows[chosen]

        def ours_sample(sample_sessions=sample_sessions, sample_views=sample_views):
            frame = session_frame(sample_sessions, sample_views)
            return SessionFeatures(min_df=1).fit(frame).transform(frame)

        our_s, _ = best_of(args.repeat, ours_sample)
        base_s, _ = timed(original_style.scan_features, sample_products, sample_rows)
        rows.append(
            [
                f"{n:,}",
                f"{len(sample_views):,}",
                ms(our_s),
                f"{our_s / n * 1e6:.0f} µs",
                ms(base_s),
                f"{base_s / n * 1e6:.0f} µs",
                ratio(base_s, our_s),
            ]
        )
    print("\n## Linear in sessions: random samples of the real labelled sessions (in memory, after the read)\n")
    print(
        table(
            ["sessions", "views", "ours", "ours per session", "scan", "scan per session", "scan ÷ ours"],
            rows,
        )
    )

    # 3. synthetic databases, ours from the database
    if args.synthetic:
        rows = []
        for n in common.sizes(args.synthetic):
            synthetic = common.synthetic_engine(n, args.mysql)
            counts = db.table_counts(synthetic)
            our_s, matrix = best_of(
                max(1, args.repeat - 2) if n >= 500_000 else args.repeat, ours, synthetic, SessionFeatures(min_df=1)
            )
            labelled = matrix.shape[0]
            estimate = scan_unit * labelled * counts["views"]
            rows.append(
                [
                    common.size_label(n),
                    f"{labelled:,}",
                    f"{counts['views']:,}",
                    ms(our_s),
                    f"{our_s / labelled * 1e6:.0f} µs",
                    f"~{estimate / 3600:,.1f} h (est.)" if estimate > 3600 else f"~{ms(estimate)} (est.)",
                ]
            )
            synthetic.dispose()
        print("\n## Ours on synthetic databases (labelled sessions, from the database)\n")
        print(table(["database", "labelled sessions", "views in table", "ours", "ours per session", "scan"], rows))
        print(f"\nscan estimate: {scan_unit * 1e9:.1f} ns per (session × product row) as measured above")
    common.footer()


if __name__ == "__main__":
    main()
