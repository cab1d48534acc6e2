#!/usr/bin/env bash
# Every benchmark in order; each one's report (stdout) also goes to benchmarks/results/NAME.txt
# (gitignored), progress (stderr) to the terminal.
#
#   benchmarks/run_all.sh
#
# count.py runs twice: on SQLite files and, with --mysql, on the MariaDB server at
# 127.0.0.1:3306 (user root, no password). end_to_end.py keeps its million-session database for
# dashboard.py, which trains its models on a 20k synthetic database first when there are none.
# The databases are cached under data/bench/: the first run builds them (minutes at a million).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=.venv/bin/python
mkdir -p benchmarks/results

run() {
    local name=$1
    shift
    echo "== $name: $*" >&2
    "$PYTHON" "$@" | tee "benchmarks/results/$name.txt"
}

run features benchmarks/features.py
run count benchmarks/count.py
run count-mysql benchmarks/count.py --mysql
run training benchmarks/training.py  # writes the models lookup.py uses
run lookup benchmarks/lookup.py
run end_to_end benchmarks/end_to_end.py --keep
run dashboard benchmarks/dashboard.py
run search benchmarks/search.py
run search-mysql benchmarks/search.py --mysql
run api benchmarks/api.py
run spark benchmarks/spark.py  # needs `make spark` (pyspark, Java 17); about 25 minutes at 1M and 10M
echo "== done: reports in benchmarks/results/" >&2
