#!/usr/bin/env bash
# Installs PyTorch 2.11.0 (the version tch 0.24.0 requires) from PyPI into a virtualenv kept
# outside the clone, reusing it when it is already there. Prints the venv path on stdout.
#
#   LABOR_TORCH_VENV   where the virtualenv lives (default ~/.cache/labor-llm/torch-2.11.0)
set -euo pipefail
TORCH_VERSION=2.11.0
VENV="${LABOR_TORCH_VENV:-$HOME/.cache/labor-llm/torch-$TORCH_VERSION}"
PY="${PYTHON:-python3}"

have_torch() {
  [ -x "$VENV/bin/python" ] &&
    "$VENV/bin/python" -c "import torch,sys; sys.exit(0 if torch.__version__.split('+')[0]=='$TORCH_VERSION' else 1)" 2>/dev/null
}

if have_torch; then
  echo "setup-torch: reusing PyTorch $TORCH_VERSION in $VENV" >&2
else
  echo "setup-torch: installing torch==$TORCH_VERSION into $VENV (about 4 GB, once per machine)" >&2
  mkdir -p "$(dirname "$VENV")"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q "torch==$TORCH_VERSION" >&2
  have_torch || { echo "setup-torch: torch $TORCH_VERSION did not import after install" >&2; exit 1; }
fi
echo "$VENV"
