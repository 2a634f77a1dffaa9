#!/usr/bin/env bash
# The main job: sets up the environment, then runs case A (plain t-SNE) on
# scikit-learn's digits end to end: embedding, figure, animation, metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
tsne-ops run --case A --dataset digits --out "${1:-out/digits_case_a}"
