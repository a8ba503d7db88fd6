#!/usr/bin/env bash
# The supervisor (launch/elastic.sh) against a launcher that reports an aborted job and then never
# exits, as Open MPI 4.1's mpirun does when a rank dies while connecting to its host's daemon (about
# one kill in twenty during start-up; cluster/faults.sh part e meets it by chance, this every time).
# The stand-in launcher prints mpirun's abort message and sleeps on its first attempt, and exits 0
# on the next: the supervisor must kill the first --kill-after seconds after the message, log why,
# restart with --resume auto, and exit 0. Needs no MPI; a few seconds.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/launcher.sh" <<'LAUNCHER'
#!/usr/bin/env bash
# $1: a directory for the attempt counter; the rest: the job's arguments (the supervisor adds --resume auto).
n=$(( $(cat "$1/attempts" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$1/attempts"; shift
echo "launcher: attempt $n with: $*"
if (( n == 1 )); then
  printf '%s\n' "Primary job  terminated normally, but 1 process returned" \
    "a non-zero exit code. Per user-direction, the job has been aborted."
  sleep 120 & wait   # a wedged mpirun: the job is over but its launcher never exits
fi
exit 0
LAUNCHER
chmod +x "$work/launcher.sh"
start=$(date +%s) status=0
timeout 60 bash "$here/launch/elastic.sh" --max-restarts 2 --kill-after 2 --log "$work/elastic.log" -- \
  "$work/launcher.sh" "$work" train --steps 10 > "$work/out.log" 2>&1 || status=$?
took=$(( $(date +%s) - start ))
fail() { echo "elastic-check: FAILED, $*"; cat "$work/elastic.log" "$work/out.log"; exit 1; }
(( status == 0 )) || fail "the supervisor exited with status $status (124: it never killed the wedged launcher)"
[[ $(cat "$work/attempts") == 2 ]] || fail "expected 2 attempts, saw $(cat "$work/attempts")"
grep -q "launcher is still running after 2s; killing it" "$work/elastic.log" || fail "no line saying why the attempt was killed"
grep -q "attempt 2 with: train --steps 10 --resume auto" "$work/out.log" || fail "the restart did not resume (--resume auto)"
echo "elastic-check: passed (the wedged launcher was killed 2 s after its abort message and the job restarted with --resume auto; $took s in all)"
