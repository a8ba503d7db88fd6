#!/usr/bin/env bash
# Tears the emulated cluster down: kills what runs in its namespaces, deletes them (the veths and
# the bridge go with them) and the state files. Safe to run when nothing is up.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^dimh[0-9]+$|^dimhub$'); do
  pids=$(ip netns pids "$ns" 2>/dev/null)
  [[ -n "$pids" ]] && kill -9 $pids 2>/dev/null
  ip netns del "$ns" 2>/dev/null
done
rm -rf "$here/.state"
echo "cluster: down"
