#!/usr/bin/env bash
# Multi-node checks on the emulated cluster (run by launch/test.sh when root):
#  - 2 hosts x 2 ranks over TCP: the distributed equivalence and checkpoint tests;
#  - the fault test (a rank killed on one host, then --resume auto);
#  - the fault suite (cluster/faults.sh: watchdog, supervisor, twenty kills, start-up faults).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
trap '"$here/down.sh" >/dev/null 2>&1 || true' EXIT
bundle=$(ls -d "$root"/.build/debug/*PackageTests.xctest | head -1)
"$here/up.sh" --hosts 2 --slots 2
echo "== multi-node tests: 2 hosts x 2 ranks (map-by node), TCP between hosts"
DIM_BIN="$bundle" "$here/run.sh" -np 4 --map-by node \
  DIMTrainTests.DistributedEquivalenceTests,DIMTrainTests.DistributedCheckpointTests,DIMTrainTests.BoundedNegativesTests 2>&1 | tee /tmp/dim-dist-cluster.log
grep -q "with 0 failures" /tmp/dim-dist-cluster.log
! grep -q "with [1-9][0-9]* failure" /tmp/dim-dist-cluster.log
"$here/down.sh"
echo "== fault test"
"$here/fault-test.sh"
echo "== fault suite (stalled rank, dead link, twenty kills, start-up kills and stop; supervised)"
"$here/faults.sh"
