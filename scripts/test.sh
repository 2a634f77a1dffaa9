#!/usr/bin/env bash
# The test command: sets up the environment (scripts/setup.sh), then runs the
# default pytest suite (slow tests excluded; add -m slow for the long ones).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
python -m pytest "$@"
