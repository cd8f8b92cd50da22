#!/usr/bin/env bash
# Every benchmark, writing benchmarks/out/*.json and the Build / Queries sections
# of benchmarks/RESULTS.md. Run on an otherwise idle machine.
#   benchmarks/run_all.sh            # 15M tokens (~15 min on 2 cores)
#   benchmarks/run_all.sh --quick    # 2M tokens, smoke run
#   benchmarks/run_all.sh --large    # also 300M-token builds of zipf and source (~45 min, ~8 GB disk)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
args=()
large=0
for a in "$@"; do
  case "$a" in
    --large) large=1 ;;
    *) args+=("$a") ;;
  esac
done
"$PY" benchmarks/bench_build.py "${args[@]}"
"$PY" benchmarks/bench_query.py "${args[@]}"
"$PY" benchmarks/bench_query.py --corpus stdlib --section queries-stdlib "${args[@]}"
if [ "$large" = 1 ]; then
  "$PY" benchmarks/bench_build.py --tokens 300M --corpora zipf,source --runs 1 --tools ours,ours-parts,infini-gram --timeout 1800 --section build-large
fi
