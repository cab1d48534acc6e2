"""Count of a category in a session: `db.count_category` against the original's UNION query.

    .venv/bin/python benchmarks/count.py [--mysql] [--synthetic 100k,1M] [--pairs 200] [--union-pairs 10]

For the real logs (27,000 sessions) and synthetic databases (cached under data/bench/, or as
gender_bench_* databases with --mysql), random (session, category) pairs: a category of the
session's own views at each level in turn, and every fourth pair one the session never viewed.
Ours is timed per request as the CLI and the dashboard make it (a pooled connection, one
query); the original's UNION of four GROUP BYs over the whole product table on one connection.
Both answers are compared on every pair the UNION is run for.
"""

from __future__ import annotations

import random

import common
from common import median, ms, percentile, ratio, table, timed

from gender import db
from tests import original_style


def pairs(engine, n: int, rng: random.Random) -> list[tuple[str, str]]:
    """(session_id, category) pairs: present categories at every level, and absent ones."""
    out = []
    while len(out) < n:
        session_id = db.random_session_id(engine, labelled=rng.random() < 0.5, rng=rng)
        if session_id is None:
            continue
        views = db.get_views(engine, session_id)
        level = db.CATEGORY_NAMES[len(out) % 4]
        if len(out) % 4 == 3 or views.empty:
            category = rng.choice(["A99999", "B00002", "C00007", "D00001", "X"])  # usually absent
        else:
            category = rng.choice(list(views[level]))
        out.append((session_id, category))
    return out


def measure(label: str, engine, args, rng: random.Random) -> list:
    counts = db.table_counts(engine)
    asked = pairs(engine, args.pairs, rng)
    for session_id, category in asked[:10]:  # warm the pool and the pages of the index
        db.count_category(engine, session_id, category)
    ours_times, ours_answers = [], []
    for session_id, category in asked:
        seconds, answer = timed(db.count_category, engine, session_id, category)
        ours_times.append(seconds)
        ours_answers.append(answer)

    union_n = args.union_pairs if counts["sessions"] < 500_000 else args.union_pairs_large
    union_times, agree, present = [], 0, 0
    with original_style.union_connection(engine) as conn:
        for (session_id, category), ours_answer in zip(asked[:union_n], ours_answers):
            seconds, answer = timed(original_style.union_count, conn, session_id, category)
            union_times.append(seconds)
            agree += answer == ours_answer
            present += answer > 0
    row = [
        label,
        f"{counts['sessions']:,}",
        f"{counts['views']:,}",
        ms(median(ours_times)),
        ms(percentile(ours_times, 0.95)),
        ms(median(union_times)),
        ratio(median(union_times), median(ours_times)),
        f"{agree}/{union_n} ({present} present)",
    ]
    if engine.dialect.name != "sqlite":  # what MariaDB makes of the original query by itself
        pushed = []
        with original_style.union_connection(engine, pushdown=True) as conn:
            for session_id, category in asked[:union_n]:
                pushed.append(timed(original_style.union_count, conn, session_id, category)[0])
        row.append(ms(median(pushed)))
    return row


def main() -> None:
    parser = common.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--synthetic", default="100k,1M", help="synthetic database sizes ('' for none)")
    parser.add_argument("--pairs", type=int, default=200, help="requests timed for ours")
    parser.add_argument("--union-pairs", type=int, default=10, help="UNION requests timed below 500k sessions")
    parser.add_argument("--union-pairs-large", type=int, default=3, help="UNION requests timed from 500k sessions")
    parser.add_argument("--no-real", action="store_true", help="skip the real logs")
    args = parser.parse_args()

    rng = random.Random(0)
    targets = [] if args.no_real else [("real PAKDD'15", lambda: common.real_engine(args.mysql))]
    for n in common.sizes(args.synthetic) if args.synthetic else []:
        targets.append((f"synthetic {common.size_label(n)}", lambda n=n: common.synthetic_engine(n, args.mysql)))

    rows, first = [], True
    for label, make in targets:
        engine = make()
        if first:
            common.header("Count of a category in a session: db.count_category vs the original's UNION", engine)
            first = False
        rows.append(measure(label, engine, args, rng))
        engine.dispose()
    headers = [
        "database",
        "sessions",
        "views",
        "ours median",
        "ours p95",
        "UNION median",
        "UNION ÷ ours",
        "same answer",
    ]
    if args.mysql:
        headers.append("UNION, server's pushdown on")
    print(table(headers, rows))
    print(
        f"\nours: {args.pairs} requests per database; UNION: {args.union_pairs} requests "
        f"({args.union_pairs_large} from 500k sessions), the whole table grouped as the original's server did"
    )
    if args.mysql:
        print(
            "last column: the same UNION text with MariaDB's condition_pushdown_for_derived left on: the server "
            "then pushes the session filter into each GROUP BY and uses the primary key"
        )
    common.footer()


if __name__ == "__main__":
    main()
