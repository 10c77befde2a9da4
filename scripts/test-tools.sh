#!/usr/bin/env bash
# Tools that some tests need beyond the build, installed when missing (idempotent, quick when
# present): rsvg-convert (Debian librsvg2-bin) to render the report's SVG plots to PNG, and a
# Python venv in .build/test-venv with the `tensorboard` package, whose event reader checks
# Parallax's TensorBoard files. Exits non-zero when something cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
apt=()
command -v rsvg-convert >/dev/null 2>&1 || apt+=(librsvg2-bin)
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || apt+=(python3-venv)
if [ "${#apt[@]}" -gt 0 ]; then
  echo "test tools: installing ${apt[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${apt[@]}"
fi
venv=.build/test-venv
if ! "$venv/bin/python" -c "import tensorboard" >/dev/null 2>&1; then
  echo "test tools: creating $venv with tensorboard (pip)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check tensorboard
fi
rsvg-convert --version
"$venv/bin/python" -c "import tensorboard; print('tensorboard', tensorboard.__version__)"
