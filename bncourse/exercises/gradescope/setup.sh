#!/usr/bin/env bash
# Gradescope autograder, part 1: run once, as root, when Gradescope builds the image.
# The autograder zip holds this file, run_autograder, requirements.txt (the course's
# pins) and the course's wheel (bncourse-*.whl, from `pip wheel --no-deps .`).
set -euo pipefail
AUTOGRADER="${AUTOGRADER:-/autograder}"
SOURCE="$AUTOGRADER/source"
export DEBIAN_FRONTEND=noninteractive
# bubblewrap is the grader's sandbox; python3-venv for an environment of our own.
if ! command -v bwrap >/dev/null 2>&1 || ! command -v python3 >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq bubblewrap python3 python3-venv >/dev/null
fi
python3 -m venv "$AUTOGRADER/venv"
# CPU-only torch (the CUDA build is several GB); the course's exact versions.
"$AUTOGRADER/venv/bin/pip" install --quiet \
  --extra-index-url https://download.pytorch.org/whl/cpu \
  -c "$SOURCE/requirements.txt" "$SOURCE"/bncourse-*.whl
