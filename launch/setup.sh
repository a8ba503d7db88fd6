#!/usr/bin/env bash
# Installs what dim-dist needs from Debian (OpenMPI, OpenBLAS, HDF5, zlib, oneDNN) and builds the
# release binary (--deps-only: only the packages). Safe to run again.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pkgs=(libopenmpi-dev openmpi-bin libopenblas-dev libhdf5-dev hdf5-tools zlib1g-dev libdnnl-dev pkg-config)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if (( ${#missing[@]} )); then
  sudo=""; [[ $(id -u) == 0 ]] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
fi
[[ "${1:-}" == "--deps-only" ]] && exit 0
cd "$here"
swift build -c release
echo "setup: built $here/.build/release/dim-dist"
