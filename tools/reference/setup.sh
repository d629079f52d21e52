#!/usr/bin/env bash
# Creates (or reuses) the reference virtualenv for tools/reference and prints its python.
#
#   bash tools/reference/setup.sh
#
# torch is not installed here: the venv sees the existing torch venv's site-packages through a
# .pth file, so pip treats torch 2.11.0 as installed and never downloads it.
#   bash tools/reference/setup.sh --tf5    # a second venv with transformers 5.x
#                                          # (requirements-tf5.txt, for make_fixtures.py --tf5)
# Overrides: LABOR_TORCH_VENV (default ~/.cache/labor-llm/torch-2.11.0),
#            LABOR_REFERENCE_VENV (default ~/.cache/labor-llm/reference-venv, or
#            ~/.cache/labor-llm/reference-venv-5 with --tf5).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
torch_venv="${LABOR_TORCH_VENV:-$HOME/.cache/labor-llm/torch-2.11.0}"
requirements="$here/requirements.txt"
venv="${LABOR_REFERENCE_VENV:-$HOME/.cache/labor-llm/reference-venv}"
if [ "${1:-}" = "--tf5" ]; then
    requirements="$here/requirements-tf5.txt"
    venv="${LABOR_REFERENCE_VENV:-$HOME/.cache/labor-llm/reference-venv-5}"
fi

if [ ! -x "$torch_venv/bin/python" ]; then
    echo "setup.sh: no torch venv at $torch_venv (expected torch 2.11.0 there; this script never installs torch)" >&2
    exit 1
fi
pyver="$("$torch_venv/bin/python" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')"
torch_site="$torch_venv/lib/$pyver/site-packages"
if [ ! -d "$torch_site/torch" ]; then
    echo "setup.sh: $torch_site has no torch package" >&2
    exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
    # Same base interpreter as the torch venv, so its compiled packages load.
    "$torch_venv/bin/python" -m venv "$venv"
fi
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$torch_site" > "$site/labor-llm-torch.pth"

# torch must come from the torch venv before anything is installed.
if ! "$venv/bin/python" -c "import torch; assert torch.__file__.startswith('$torch_site')" 2>/dev/null; then
    echo "setup.sh: torch in $venv does not come from $torch_site; refusing to let pip install torch" >&2
    exit 1
fi

if ! "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"; then
    echo "setup.sh: pip install failed" >&2
    exit 1
fi
if [ "$requirements" = "$here/requirements.txt" ]; then
"$venv/bin/python" - <<PY >&2
import torch, transformers, tokenizers, safetensors, gguf, peft, numpy, sklearn, scipy
assert torch.__file__.startswith("$torch_site"), "torch must come from the torch venv: " + torch.__file__
print("reference venv: torch", torch.__version__, "transformers", transformers.__version__,
      "tokenizers", tokenizers.__version__, "peft", peft.__version__, "numpy", numpy.__version__,
      "scikit-learn", sklearn.__version__, "scipy", scipy.__version__)
PY
else
"$venv/bin/python" - <<PY >&2
import torch, transformers, tokenizers, safetensors, numpy
assert torch.__file__.startswith("$torch_site"), "torch must come from the torch venv: " + torch.__file__
assert transformers.__version__.startswith("5."), transformers.__version__
print("reference venv (transformers 5): torch", torch.__version__, "transformers",
      transformers.__version__, "tokenizers", tokenizers.__version__, "numpy", numpy.__version__)
PY
fi
echo "$venv/bin/python"
