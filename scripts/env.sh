# Sourced by the project's scripts: installs (once) and activates the PyTorch virtualenv that
# tch builds against, and sets the variables torch-sys reads.
_labor_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VIRTUAL_ENV="$(bash "$_labor_root/scripts/setup-torch.sh")" || return 1
export VIRTUAL_ENV
export PATH="$VIRTUAL_ENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
unset _labor_root
