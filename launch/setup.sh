#!/usr/bin/env bash
# Installs what dim-dist needs from Debian (OpenMPI, OpenBLAS, HDF5, zlib, oneDNN, libjpeg-turbo,
# libpng), builds the release binary and installs it onto the PATH, so that
# `mpirun -np 8 dim-dist train` works as written. Safe to run again.
#
#   bash launch/setup.sh                     # packages, build, install (/usr/local/bin as root, else ~/.local/bin)
#   bash launch/setup.sh --prefix DIR        # install into DIR/bin
#   bash launch/setup.sh --deps-only         # only the Debian packages
#   bash launch/setup.sh --no-mpi-defaults   # leave Open MPI's defaults alone (see below)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deps_only=0 mpi_defaults=1 prefix=""
while (( $# )); do
  case "$1" in
    --deps-only) deps_only=1 ;;
    --no-mpi-defaults) mpi_defaults=0 ;;
    --prefix) prefix="$2"; shift ;;
    *) echo "setup: unknown option $1 (see the comment at the top of launch/setup.sh)" >&2; exit 2 ;;
  esac
  shift
done
pkgs=(libopenmpi-dev openmpi-bin libopenblas-dev libhdf5-dev hdf5-tools zlib1g-dev libdnnl-dev
      libturbojpeg0-dev libpng-dev pkg-config python3-h5py python3-numpy)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if (( ${#missing[@]} )); then
  sudo=""; [[ $(id -u) == 0 ]] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
fi
(( deps_only )) && exit 0
cd "$here"
swift build -c release
if [[ -z $prefix ]]; then
  if [[ $(id -u) == 0 ]]; then prefix=/usr/local; else prefix="$HOME/.local"; fi
fi
mkdir -p "$prefix/bin"
install -m 755 .build/release/dim-dist "$prefix/bin/dim-dist"
# The installed binary finds the embedded MNIST (and imports it into data/) through this link.
mkdir -p "$prefix/share"
ln -sfn "$here" "$prefix/share/dim-dist"
echo "setup: installed $prefix/bin/dim-dist (embedded data via $prefix/share/dim-dist -> $here)"
case ":$PATH:" in
  *":$prefix/bin:"*) ;;
  *) echo "setup: $prefix/bin is not on your PATH; add it: export PATH=\"$prefix/bin:\$PATH\"" ;;
esac
if (( mpi_defaults )); then
  # Open MPI refuses more ranks than cores unless oversubscription is allowed, and refuses root
  # unless two variables are set; both are per-user settings, written once and announced here.
  conf="$HOME/.openmpi/mca-params.conf"
  if ! grep -qs "^rmaps_base_oversubscribe" "$conf"; then
    mkdir -p "$(dirname "$conf")"
    printf '# added by dim-dist launch/setup.sh: allow more ranks than cores\nrmaps_base_oversubscribe = 1\n' >> "$conf"
    echo "setup: allowed Open MPI to run more ranks than cores ($conf)"
  fi
  if [[ $(id -u) == 0 ]] && ! grep -qs "dim-dist: Open MPI as root" "$HOME/.bashrc"; then
    cat >> "$HOME/.bashrc" <<'EOF'
# dim-dist: Open MPI as root (added by launch/setup.sh; remove these lines to undo)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
EOF
    echo "setup: root may run mpirun (OMPI_ALLOW_RUN_AS_ROOT in ~/.bashrc; new shells, or: source ~/.bashrc)"
  fi
fi
echo "setup: done. Try: mpirun -np 8 dim-dist train --steps 300   (or launch/local.sh -np 8 train --steps 300)"
