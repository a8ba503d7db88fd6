#!/usr/bin/env bash
# Runs dim-dist across the emulated cluster with mpirun (started inside the first host).
#
#   cluster/run.sh -np 4 [--map-by node] train --data DIR ...     # a dim-dist command
#   cluster/run.sh -np 2 --host 10.77.0.1:2 train ...             # only these hosts (mpirun's --host)
#   DIM_BIN=/abs/path/binary cluster/run.sh -np 4 ARGS...          # any binary (e.g. the test bundle)
#
# Ranks talk over TCP between hosts (shared memory within one). Ranks yield when idle, since the
# hostfile's slots can exceed the real cores. Extra mpirun options go in $MPIRUN_OPTS.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state="$here/.state"
[[ -f "$state/hosts" ]] || { echo "cluster/run.sh: no cluster; run cluster/up.sh first" >&2; exit 1; }
np=2 map="node" hosts="--hostfile $state/hosts"
while [[ "${1:-}" == -* ]]; do
  case "$1" in
    -np|-n) np="$2"; shift 2;;
    --map-by) map="$2"; shift 2;;
    --host) hosts="--host $2"; shift 2;;
    *) break;;
  esac
done
bin="${DIM_BIN:-$(cd "$here/.." && pwd)/.build/release/dim-dist}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}" SWIFT_BACKTRACE=enable=no
args=$(printf ' %q' "$@")
exec ip netns exec dimh0 unshare --uts sh -c "hostname dimh0; exec mpirun $hosts -np $np --map-by $map \
  --mca plm_rsh_agent $state/rsh-agent.sh --mca mpi_yield_when_idle 1 \
  --mca btl tcp,vader,self --mca btl_tcp_if_include eth0 --mca oob_tcp_if_include eth0 \
  -x OPENBLAS_NUM_THREADS -x SWIFT_BACKTRACE ${MPIRUN_OPTS:-} $bin $args"
