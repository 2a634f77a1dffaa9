#!/usr/bin/env bash
# Device check for the CUDA kernels, on a GPU machine without TensorFlow.
#
#   benchmarks/gpu_check.sh [OUT_DIR]        (default: $OUT, else ./gpu_results)
#
# 1. builds the pybind11 module alone (no TensorFlow) into build-gpu/out;
# 2. runs the module's CPU tests and the GPU tests (tests/test_gpu_kernels.py,
#    which also covers the sparse-P kernels: knn_joint_probabilities and
#    sparse_tsne_gradient, GPU against CPU) against that build
#    (TSNE_OPS_KERNELS_DIR);
# 3. benchmarks every kernel against PyTorch (or CuPy) composites on the same
#    GPU (benchmarks/gpu_bench.py).
# Writes build/test/bench logs, pytest junit XML, gpu_bench.json/.txt and a
# summary status.json to OUT_DIR. About 2-4 minutes on an H100.
#
# Exit status: 0 all passed; 1 build or tests failed; 2 no CUDA device (the
# build and the CPU-side tests still ran); 3 a performance floor was missed.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-${OUT:-./gpu_results}}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
PY="${PYTHON:-$(command -v python3 || command -v python)}"
BUILD="$REPO/build-gpu"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
LOG="$OUT_DIR/gpu_check.log"
: > "$LOG"

log() { echo "[gpu_check $(date +%H:%M:%S)] $*" | tee -a "$LOG"; }
status() {  # status.json: stage reached and outcome
  printf '{"stage": "%s", "exit_code": %s, "message": "%s"}\n' "$1" "$2" "$3" > "$OUT_DIR/status.json"
}

cd "$REPO"
log "repo $REPO, python $PY, out $OUT_DIR"
{ nvidia-smi 2>&1 || echo "nvidia-smi: not available"; } > "$OUT_DIR/nvidia-smi.txt"
{ nvcc --version 2>&1 || echo "nvcc: not found"; "$PY" --version; } > "$OUT_DIR/toolchain.txt" 2>&1

# ---------------------------------------------------------------- build ---
log "configure + build (TSNE_OPS_BUILD_TF_OPS=OFF, -j$JOBS)"
if ! cmake -S . -B "$BUILD" -DTSNE_OPS_BUILD_TF_OPS=OFF -DTSNE_OPS_OUTPUT_DIR="$BUILD/out" \
      -DPython_EXECUTABLE="$PY" -DCMAKE_BUILD_TYPE=Release > "$OUT_DIR/build.log" 2>&1 ||
   ! cmake --build "$BUILD" -j "$JOBS" >> "$OUT_DIR/build.log" 2>&1; then
  log "BUILD FAILED (see build.log)"; tail -30 "$OUT_DIR/build.log"
  status build 1 "build failed"; exit 1
fi
grep -E "tsne_ops: building" "$OUT_DIR/build.log" | tee -a "$LOG"
export TSNE_OPS_KERNELS_DIR="$BUILD/out"

read -r HAS_CUDA INFO < <("$PY" - <<'EOF'
import sys
sys.path.insert(0, "tests")
import kernels_module
m = kernels_module.load()
print(int(m.has_cuda()), f"built_with_cuda={m.built_with_cuda()} devices={m.cuda_device_count()} cpu_isa={m.cpu_isa()}")
EOF
)
log "module: $INFO"

# ---------------------------------------------------------------- tests ---
log "tests: tests/test_pybind_module.py tests/test_pybind_nearest_neighbors.py tests/test_gpu_kernels.py"
timeout 300 "$PY" -m pytest -p no:cacheprovider -q -rs tests/test_pybind_module.py tests/test_pybind_nearest_neighbors.py tests/test_gpu_kernels.py \
    --junitxml="$OUT_DIR/pytest.xml" > "$OUT_DIR/tests.log" 2>&1
TEST_RC=$?
tail -15 "$OUT_DIR/tests.log" | tee -a "$LOG"
if [ "$TEST_RC" -ne 0 ]; then
  log "TESTS FAILED (rc $TEST_RC, see tests.log)"
fi

if [ "${HAS_CUDA:-0}" != "1" ]; then
  log "NO CUDA DEVICE: built the module and ran the CPU-side tests; GPU tests skipped, no benchmarks"
  status tests 2 "no CUDA device; CPU tests rc=$TEST_RC"
  [ "$TEST_RC" -ne 0 ] && exit 1
  exit 2
fi

# ------------------------------------------------------------ benchmark ---
log "benchmarks"
timeout 360 "$PY" benchmarks/gpu_bench.py "$OUT_DIR" 2>&1 | tee "$OUT_DIR/bench.log"
BENCH_RC=${PIPESTATUS[0]}
log "bench rc $BENCH_RC"

if [ "$TEST_RC" -ne 0 ]; then status done 1 "tests failed (rc $TEST_RC), bench rc $BENCH_RC"; exit 1; fi
if [ "$BENCH_RC" -eq 3 ]; then status done 3 "tests passed; a performance floor was missed"; exit 3; fi
if [ "$BENCH_RC" -ne 0 ]; then status done 1 "tests passed; bench failed (rc $BENCH_RC)"; exit 1; fi
status done 0 "tests passed, floors met"
log "ALL OK"
exit 0
