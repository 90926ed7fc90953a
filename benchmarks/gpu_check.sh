#!/usr/bin/env bash
# One-call GPU check: the cupy tests, the backend-parametrized suite on cupy, the
# targets beside PyTorch CUDA (benchmarks/gpu_compare.py) and the benchmark suite's GPU cases;
# the targets' table is printed last. Under 5 minutes: every section has a timeout taken from
# a shared deadline, and a failing section does not stop the others.
#
# Run from the repository root on a machine with a GPU, CuPy, PyTorch, pytest and the
# package's dependencies importable, e.g.:
#
#   pip install --target /tmp/site .whl/*.whl      # array-api-compat, if missing
#   export PYTHONPATH=/tmp/site:$PWD
#   bash benchmarks/gpu_check.sh
#
# Logs and JSON go to $OUT (a temporary folder if unset). Exit status: 0 when every section
# passed and every target was met, 1 otherwise.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="${PYTHONPATH:-$PWD}"
PY="${PYTHON:-python3}"
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
START=$(date +%s)
BUDGET="${GPU_CHECK_BUDGET:-285}"   # seconds for the whole check
STATUS=0
export MLP_ACCEL_TF32=0 CUPY_TF32=0 PYTHONDONTWRITEBYTECODE=1

left() { echo $(( BUDGET - ($(date +%s) - START) )); }
# section NAME MAX_SECONDS RESERVE_SECONDS CMD...: run CMD with a timeout of at most
# MAX_SECONDS, leaving RESERVE_SECONDS of the budget for the sections after it; log to
# $OUT/NAME.log and print its last lines.
section() {
    local name=$1 max=$2 reserve=$3
    shift 3
    local t=$(( $(left) - reserve ))
    (( t > max )) && t=$max
    echo "== $name (timeout ${t}s)"
    if (( t < 10 )); then
        echo "   skipped: out of time"
        STATUS=1
        return
    fi
    local t0=$(date +%s)
    timeout -k 5 "$t" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    tail -n "${TAIL_LINES:-12}" "$OUT/$name.log" | sed 's/^/   /'
    echo "   -> exit $rc after $(( $(date +%s) - t0 ))s"
    (( rc != 0 )) && STATUS=1
    return 0
}

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | sed 's/^/   /'
"$PY" - <<'EOF' 2>&1 | sed 's/^/   /'
import importlib, sys
print("python", sys.version.split()[0])
for name in ("numpy", "cupy", "array_api_compat", "torch", "numba", "sklearn", "pytest"):
    try:
        print(f"{name} {importlib.import_module(name).__version__}")
    except Exception as exc:
        print(f"{name} MISSING ({type(exc).__name__}: {exc})")
EOF

section backends 60 230 "$PY" -m mlp_accel backends

# The cupy tests on the GPU (the emulated twins need g++ and prove nothing more here).
TAIL_LINES=15 section cupy_tests 100 150 \
    "$PY" -m pytest -q -p no:cacheprovider -rfE tests/test_cupy_backend.py -k "not emulated"

# The targets beside PyTorch CUDA: its table is printed again at the very end.
TAIL_LINES=3 section gpu_compare 100 60 "$PY" benchmarks/gpu_compare.py --out "$OUT"

# Every backend-parametrized test, on cupy (the CPU backends are CI's; across 8 workers where
# pytest-xdist is installed).
XDIST=()
"$PY" -c "import xdist" 2>/dev/null && XDIST=(-n 8)
MLP_ACCEL_TEST_BACKENDS=cupy TAIL_LINES=8 section suite 90 35 \
    "$PY" -m pytest -q -p no:cacheprovider "${XDIST[@]}" --maxfail=10 -rfE tests \
    -k "cupy and not emulated"

# The benchmark suite's GPU cases: cupy beside PyTorch CUDA (and the CPU peers where the case
# has them).
TAIL_LINES=30 section bench 60 3 \
    "$PY" -m mlp_accel bench --backends cupy --shapes tutorial-100k,mlp256-1024,mnist-65536 \
    --dtype float32 --quick --no-sweep --quiet --json "$OUT/bench.json"

echo "== targets (float32, TF32 off) -- logs in $OUT, total $(( $(date +%s) - START ))s"
if [[ -s "$OUT/gpu_compare_table.txt" ]]; then
    cat "$OUT/gpu_compare_table.txt"
    grep -q "FAIL\|ERROR" "$OUT/gpu_compare_table.txt" && STATUS=1
else
    echo "no table: see $OUT/gpu_compare.log"
    tail -n 20 "$OUT/gpu_compare.log" 2>/dev/null
    STATUS=1
fi
exit $STATUS
