#!/usr/bin/env bash
# Supervisor: runs a dim-dist training job and, when it fails, runs it again with --resume auto,
# up to --max-restarts times, so a crashed or stalled rank costs at most one checkpoint interval
# plus the watchdog's deadline and needs no person.
#
#   launch/elastic.sh [--max-restarts N] [--log FILE] [--kill-after SEC] -- COMMAND ...
#   launch/elastic.sh --max-restarts 5 -- launch/local.sh -np 4 train --steps 2000 --checkpoint-every 10m --out runs/a
#   launch/elastic.sh -- cluster/run.sh -np 4 train ... --step-timeout 60s
#
# COMMAND is any launcher of `dim-dist train` (mpirun, srun, launch/local.sh, cluster/run.sh);
# every attempt gets --resume auto appended. Exit status: 0 when the job finished; 75 when it was
# stopped by SIGTERM/SIGUSR1 (checkpoint written; a scheduler requeues it); the last failure's
# status when the restarts ran out. SIGTERM or SIGUSR1 sent to the supervisor are passed on to the
# job as SIGUSR1 (finish the step, checkpoint, exit 75). Each attempt's output goes to stdout and
# to the log; each restart is logged with its cause. A job that has ended but whose launcher has
# not exited --kill-after seconds later is killed: after a watchdog line (mpirun can wait long for a
# host it cannot reach) or mpirun's or srun's report that the job was aborted (Open MPI 4.1's mpirun
# waits forever for a host's daemon that wedged when a rank died while connecting to it, which a
# rank killed during start-up causes about once in twenty: the fault suite's part e).
#
# Going on with the hosts that are left (as torchrun's --nnodes MIN:MAX):
#   launch/elastic.sh --hosts h1,h2,h3,h4 --slots 2 --min-hosts 2 -- \
#     mpirun --host {hosts} -np {np} dim-dist train --batch-size 256 ...
# Each attempt fills in {hosts} (host:slots,...) and {np} (hosts x slots). Before every restart each
# host is checked with --check-host (default: ping -c 1 -W 2 {host}); a host that fails the check
# is dropped and the job resumes on the others with the same global batch (more images per
# rank), down to --min-hosts; each change is logged. It refuses, clearly, to go on when the global
# batch (--batch-size in COMMAND, default 64) no longer divides by the ranks left.
set -uo pipefail
max_restarts=3 log=elastic.log kill_after=30 hosts="" slots=1 min_hosts="" check_host='ping -c 1 -W 2 {host}'
while (( $# )); do
  case "$1" in
    --max-restarts) max_restarts="$2"; shift 2 ;;
    --log) log="$2"; shift 2 ;;
    --kill-after) kill_after="$2"; shift 2 ;;
    --hosts) hosts="$2"; shift 2 ;;
    --slots) slots="$2"; shift 2 ;;
    --min-hosts) min_hosts="$2"; shift 2 ;;
    --check-host) check_host="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "elastic: unknown option $1 (usage: launch/elastic.sh [--max-restarts N] [--log FILE] -- COMMAND ...)" >&2; exit 2 ;;
  esac
done
(( $# )) || { echo "elastic: no command (usage: launch/elastic.sh [options] -- COMMAND ...)" >&2; exit 2; }
note() { echo "elastic: $(date -u +%FT%TZ) $*" | tee -a "$log" >&2; }
IFS=, read -r -a host_list <<< "$hosts"
min_hosts=${min_hosts:-${#host_list[@]}}
batch=64
for (( i = 1; i < $#; i++ )); do [[ ${!i} == --batch-size ]] && { j=$((i + 1)); batch=${!j}; }; done
# The command of an attempt: {hosts} and {np} filled in from the hosts still in use.
command_for_attempt() {
  attempt_command=()
  local spec="" h
  for h in "${host_list[@]}"; do spec+="${spec:+,}$h:$slots"; done
  local np=$(( ${#host_list[@]} * slots ))
  for a in "$@"; do a=${a//\{hosts\}/$spec}; attempt_command+=("${a//\{np\}/$np}"); done
}
# Drops the hosts that fail the check; false when the job cannot go on.
drop_unreachable_hosts() {
  (( ${#host_list[@]} )) || return 0
  local kept=() h
  for h in "${host_list[@]}"; do
    if sh -c "${check_host//\{host\}/$h}" > /dev/null 2>&1; then kept+=("$h"); else
      note "host $h failed its check (${check_host//\{host\}/$h}); dropping it"
    fi
  done
  (( ${#kept[@]} == ${#host_list[@]} )) && return 0
  host_list=("${kept[@]}")
  local np=$(( ${#host_list[@]} * slots ))
  if (( ${#host_list[@]} < min_hosts )); then
    note "only ${#host_list[@]} host(s) left, fewer than --min-hosts $min_hosts; giving up"; return 1
  fi
  if (( np == 0 || batch % np != 0 )); then
    note "the global batch $batch does not divide by the $np rank(s) left on ${host_list[*]}; giving up"; return 1
  fi
  note "continuing on ${#host_list[@]} host(s) (${host_list[*]}), $np ranks, global batch $batch ($((batch / np)) per rank)"
}
# A line after which the job is over even when its launcher is still running.
ended_pattern='dim-dist: watchdog|the job has been aborted|mpirun noticed that process|srun: Job step aborted'
child=0 stop_requested=0
forward_stop() { stop_requested=1; (( child )) && kill -USR1 "$child" 2>/dev/null; }
trap forward_stop TERM USR1

attempt=0
while :; do
  attempt=$((attempt + 1))
  out=$(mktemp /tmp/dim-dist-elastic.XXXXXX)
  command_for_attempt "$@"
  note "attempt $attempt: ${attempt_command[*]} --resume auto"
  "${attempt_command[@]}" --resume auto > >(tee -a "$log" "$out") 2>&1 &
  child=$!
  ended_at=0 killed=0
  while kill -0 "$child" 2>/dev/null; do
    if (( ended_at == 0 )) && grep -qE "$ended_pattern" "$out" 2>/dev/null; then ended_at=$(date +%s); fi
    if (( ended_at && !killed && $(date +%s) - ended_at > kill_after )); then
      note "attempt $attempt: the job ended ($(grep -m1 -oE "$ended_pattern" "$out")) but its launcher is still running after ${kill_after}s; killing it"
      # The launcher first, then its children: killed first, a child's exit could let it exit 0.
      kids=$(pgrep -P "$child" || true)
      kill -KILL "$child" 2>/dev/null; [[ -z "$kids" ]] || kill -KILL $kids 2>/dev/null
      killed=1
    fi
    sleep 1
  done
  wait "$child"; status=$?
  (( killed && status == 0 )) && status=137  # a job the supervisor killed has not finished
  child=0
  cause=$(grep -m1 -E "dim-dist: watchdog|rank [0-9]+:|exited on signal|noticed that process|Error:|error:" "$out" | cut -c1-300)
  rm -f "$out"
  if (( status == 0 )); then note "attempt $attempt: finished"; exit 0; fi
  if (( status == 75 || stop_requested )); then note "attempt $attempt: stopped on request (status $status); resumable"; exit 75; fi
  if (( attempt > max_restarts )); then
    note "attempt $attempt: failed with status $status (${cause:-no message}); no restarts left"
    exit "$status"
  fi
  note "attempt $attempt: failed with status $status (${cause:-no message}); restarting ($attempt of $max_restarts)"
  sleep 2
  drop_unreachable_hosts || exit "$status"
done
