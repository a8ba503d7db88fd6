#!/usr/bin/env bash
# Brings up an emulated cluster on this machine: N "hosts", each a network namespace with its own
# hostname and address (10.77.0.1, .2, ...) on a private bridge that lives in a hub namespace.
# The root namespace is not attached, so nothing leaves the machine. Optionally caps each host's
# link with a token bucket (latency cannot be emulated: this kernel has no netem).
#
#   cluster/up.sh --hosts 4 [--slots 2] [--rate 1gbit]
#
# Writes cluster/.state/{hosts,rsh-agent.sh,env}. Idempotent: tears down any previous cluster first.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
hosts=2 slots=2 rate=""
while (( $# )); do
  case "$1" in
    --hosts) hosts="$2"; shift 2;;
    --slots) slots="$2"; shift 2;;
    --rate) rate="$2"; shift 2;;
    *) echo "cluster/up.sh: unknown option $1" >&2; exit 2;;
  esac
done
[[ $(id -u) == 0 ]] || { echo "cluster/up.sh: needs root (network namespaces)" >&2; exit 1; }
# ip and unshare build the hosts; ping is the supervisor's default check that a host is up.
if ! command -v ip >/dev/null || ! command -v unshare >/dev/null || ! command -v ping >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q iproute2 util-linux iputils-ping >/dev/null
fi
"$here/down.sh" >/dev/null 2>&1 || true
state="$here/.state"
mkdir -p "$state"
trap 'echo "cluster/up.sh: failed; tearing down" >&2; "$here/down.sh" >/dev/null 2>&1 || true' ERR
ip netns add dimhub
ip -n dimhub link add br0 type bridge
ip -n dimhub link set br0 up
: > "$state/hosts"
agent_cases=""
for (( i = 0; i < hosts; i++ )); do
  ns="dimh$i" addr="10.77.0.$((i + 1))"
  ip netns add "$ns"
  ip link add name "vh$i" netns dimhub type veth peer name eth0 netns "$ns"
  ip -n dimhub link set "vh$i" master br0
  ip -n dimhub link set "vh$i" up
  ip -n "$ns" addr add "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  if [[ -n "$rate" ]]; then
    ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "$rate" burst 256kb latency 50ms
  fi
  echo "$addr slots=$slots" >> "$state/hosts"
  agent_cases+="  $addr) ns=$ns;;"$'\n'
done
# mpirun starts remote daemons as: agent HOST orted <args>; enter that host's namespace, with its
# own hostname (Open MPI's shared-memory files are named after it).
cat > "$state/rsh-agent.sh" <<AGENT
#!/bin/sh
host="\$1"; shift
case "\$host" in
$agent_cases  *) echo "rsh-agent: unknown host \$host" >&2; exit 1;;
esac
exec ip netns exec "\$ns" unshare --uts sh -c "hostname \$ns; \$*"
AGENT
chmod +x "$state/rsh-agent.sh"
echo "hosts=$hosts slots=$slots rate=${rate:-unlimited}" > "$state/env"
trap - ERR
echo "cluster: $hosts host(s) up (10.77.0.1-$hosts, $slots slot(s) each, link ${rate:-unlimited}); hostfile $state/hosts"
