#!/usr/bin/env bash
# Sets up .venv in the repository, installs the pinned requirements and builds
# tsne_ops in place (TensorFlow op library, CUDA kernels when nvcc is found,
# pybind11 module). Safe to run again: it only rebuilds what changed.
# Every failure ends with a line naming the step and the cause, so that CI
# (.ci/run -> scripts/test.sh -> here) never stops without a message.
set -euo pipefail
cd "$(dirname "$0")/.."
trap 'echo "scripts/setup.sh: failed (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  # TensorFlow 2.21.0 has wheels for CPython 3.10-3.13 only (setup.py's python_requires).
  if ! "$PYTHON" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 13))'; then
    echo "scripts/setup.sh: $PYTHON is $("$PYTHON" --version 2>&1 | head -n 1); TensorFlow 2.21 needs" \
         "Python 3.10-3.13. Set PYTHON=python3.X to choose another interpreter." >&2
    exit 1
  fi
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
  cat build/pip-install.log >&2
  echo "scripts/setup.sh: the build failed; the log above is also in build/pip-install.log" >&2
  exit 1
fi
grep -E "tsne_ops: (building|TensorFlow)" build/pip-install.log || true
# The import check keeps its error output: a failure here (a missing library,
# a TensorFlow version mismatch) explains itself in the ImportError.
if ! TF_CPP_MIN_LOG_LEVEL=3 python -c \
    "import tsne_ops; print('tsne_ops', tsne_ops.__version__, 'built', tsne_ops.build_info())"; then
  echo "scripts/setup.sh: tsne_ops was built but does not import (the error is above)" >&2
  exit 1
fi
