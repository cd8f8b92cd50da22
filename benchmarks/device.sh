#!/bin/bash
# The many-core measurements of issues 15 and 20, in one run on a machine
# with many cores (no network needed): the 300M zipf build, ours on every
# core against infini-gram --cpus on as many, then the first queries after
# open at 300M tokens and count throughput from 1 to every core.
#
#   bash benchmarks/device.sh [WHEEL_DIR] [RESULT_DIR]
#
# (TOKENS=2M SCALE=2M for a dry run of the script itself.)
# WHEEL_DIR holds the infini-gram wheel (pip download infini-gram==2.6.0);
# the project runs from this checkout (copied to a temporary site folder, so
# nothing is installed). RESULT_DIR receives the logs, the saved runs and
# RESULTS.md with the new sections (build-many-cores, scale-many-cores).
set -u
cd "$(dirname "$0")/.."
wheels=${1:-.whl}
results=${2:-benchmarks/out/device}
site=$(mktemp -d)
mkdir -p "$results"
export PYTHONUNBUFFERED=1 PYTHONPATH=$site
python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" "$wheels"/infini_gram-*.whl
cp -r infinigram "$site/" && cp -r native "$site/infinigram/native"
cores=$(nproc)
python3 -c "import numba, numpy, sys; print('python', sys.version.split()[0], 'numba', numba.__version__, 'numpy', numpy.__version__)"
echo "cores $cores; $(free -g | awk '/Mem/ {print $2}') GiB"
timeout 250 python3 benchmarks/bench_build.py --tokens "${TOKENS:-300M}" --corpora zipf --runs 1 \
    --tools ours,infini-gram --threads "$cores" --peer-mem 100 --timeout 150 \
    --section build-many-cores 2>&1 | tee "$results/build.log"
timeout 250 python3 benchmarks/bench_scale.py --tokens "${SCALE:-300M}" --threads "1,2,4,$cores" \
    --section scale-many-cores 2>&1 | tee "$results/scale.log"
cp benchmarks/out/build-*-zipf.json benchmarks/out/scale-scale-many-cores.json \
    benchmarks/RESULTS.md "$results/" 2>/dev/null
ls -la "$results"
