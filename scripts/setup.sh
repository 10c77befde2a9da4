#!/usr/bin/env bash
# Installs what Parallax needs on Debian (if missing) and builds it.
# Usage: bash scripts/setup.sh [debug|release]
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-release}"
packages=(libopenmpi-dev openmpi-bin libopenblas-dev libsndfile1-dev libsamplerate0-dev espeak-ng sox
  zlib1g-dev libpng-dev libturbojpeg0-dev pkg-config dataset-fashion-mnist iproute2)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi
swift build -c "$config" --product parallax
