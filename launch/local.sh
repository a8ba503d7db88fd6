#!/usr/bin/env bash
# Run dim-dist with N ranks on this machine, with the mpirun flags this kind of machine needs.
#
#   launch/local.sh -np 8 train --steps 300            # 8 ranks
#   launch/local.sh -np 1 bench                        # one process, no mpirun
#   DIM_DIST=/path/to/dim-dist launch/local.sh -np 2 train ...
#
# - one OpenBLAS thread per rank when ranks >= cores (ranks share the cores; more threads would
#   fight), otherwise cores/ranks threads;
# - --oversubscribe when ranks exceed cores (otherwise Open MPI refuses, or ranks busy-poll and
#   collectives get 100-1000x slower);
# - the run-as-root switches only when running as root.
set -euo pipefail
np=1
if [[ "${1:-}" == "-np" || "${1:-}" == "-n" ]]; then np="$2"; shift 2; fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${DIM_DIST:-$here/.build/release/dim-dist}"
if [[ ! -x "$bin" ]]; then
  echo "launch/local.sh: $bin not found; build it with: swift build -c release" >&2
  exit 1
fi
cores=$(nproc)
threads=$(( cores / np )); (( threads < 1 )) && threads=1
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-$threads}"
if (( np == 1 )); then
  exec "$bin" "$@"
fi
flags=(-np "$np" -x OPENBLAS_NUM_THREADS -x SWIFT_BACKTRACE=enable=no)
(( np > cores )) && flags+=(--oversubscribe)
if [[ $(id -u) == 0 ]]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
exec mpirun "${flags[@]}" "$bin" "$@"
