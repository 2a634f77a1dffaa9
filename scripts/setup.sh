#!/usr/bin/env bash
# Sets up .venv in the repository, installs the pinned requirements and builds
# tsne_ops in place (TensorFlow op library, CUDA kernels when nvcc is found,
# pybind11 module). Safe to run again: it only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip
echo "== installing requirements"
python -m pip install -q -r requirements.txt
echo "== building tsne_ops (CMake; see build/ for the log)"
mkdir -p build
if ! python -m pip install -q --no-build-isolation --no-deps -e . > build/pip-install.log 2>&1; then
  cat build/pip-install.log
  exit 1
fi
grep -E "tsne_ops: (building|TensorFlow)" build/pip-install.log || true
python -c "import tsne_ops; print('tsne_ops', tsne_ops.__version__, 'built', tsne_ops.build_info())" 2>/dev/null
