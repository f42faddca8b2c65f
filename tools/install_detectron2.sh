#!/usr/bin/env bash
# Installs detectron2 into the given Python environment.
#   DETECTRON2_SOURCE=sal-detectron2==0.7.2 (default): the prebuilt wheel of upstream detectron2
#     a59f0563 (cp310 tag; its compiled _C is not needed by DenseCLIP and is skipped on 3.11).
#   DETECTRON2_SOURCE=<anything else>: handed to pip as is (a git URL, a local checkout, ...).
set -euo pipefail
PY=${1:?usage: install_detectron2.sh PYTHON}
SOURCE=${DETECTRON2_SOURCE:-sal-detectron2==0.7.2}

if "$PY" -c "import detectron2" 2>/dev/null; then
  exit 0
fi
if [[ "$SOURCE" != sal-detectron2* ]]; then
  "$PY" -m pip install --quiet --no-build-isolation "$SOURCE"
  exit 0
fi
WHEELS=$(mktemp -d)
trap 'rm -rf "$WHEELS"' EXIT
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.10 \
  --implementation cp "$SOURCE" -d "$WHEELS"
"$PY" -m installer "$WHEELS"/sal_detectron2-*.whl
