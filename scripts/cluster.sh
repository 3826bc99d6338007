#!/usr/bin/env bash
# Runs a three-node Conclave cluster on this machine, loopback only.
#
#   scripts/cluster.sh up            build bin/conclave, start the nodes that are not running,
#                                    wait until every node knows a leader, print the endpoints
#   scripts/cluster.sh down [--purge] stop every node (SIGTERM, SIGKILL after 10 s);
#                                    --purge also deletes the data directory
#   scripts/cluster.sh status        running/stopped and pid per node, then `conclave cluster status`
#   scripts/cluster.sh kill N        SIGKILL node N (a crash)
#   scripts/cluster.sh start N       start node N if it is not running
#   scripts/cluster.sh restart N     stop node N gracefully, then start it
#   scripts/cluster.sh logs N        tail node N's log (follows when stdout is a terminal)
#
# Node N (1..3) listens on 127.0.0.1: gRPC BASE+N, raft BASE+100+N, metrics BASE+200+N.
# Environment:
#   CONCLAVE_BASE_PORT   BASE (default 7000)
#   CONCLAVE_DATA_DIR    data directory (default ./data under the repo root; a relative
#                        path is taken from the current directory); node N uses $DATA/nN
#   CONCLAVE_UP_TIMEOUT  seconds to wait for a leader (default 30)
#
# Processes are found only through their pid files ($DATA/nN/pid); nothing is killed by name.
set -euo pipefail

NODES=(1 2 3)
STOP_TIMEOUT=10

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE=${CONCLAVE_BASE_PORT:-7000}
UP_TIMEOUT=${CONCLAVE_UP_TIMEOUT:-30}
DATA=${CONCLAVE_DATA_DIR:-$ROOT/data}
case $DATA in
  /*) ;;
  *) DATA=$PWD/$DATA ;;
esac
BIN=$ROOT/bin/conclave

die() {
  echo "cluster.sh: $*" >&2
  exit 1
}

# usage [STATUS] prints the comment at the top of this file and exits (2 unless told).
usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p;}' "${BASH_SOURCE[0]}" >&2
  exit "${1:-2}"
}

if ! [[ $BASE =~ ^[0-9]+$ ]] || ((BASE < 1 || BASE + 203 > 65535)); then
  die "CONCLAVE_BASE_PORT must be a port number from 1 to 65332, got '$BASE'"
fi
[[ $UP_TIMEOUT =~ ^[0-9]+$ ]] || die "CONCLAVE_UP_TIMEOUT must be whole seconds, got '$UP_TIMEOUT'"

grpc_addr() { echo "127.0.0.1:$((BASE + $1))"; }
raft_addr() { echo "127.0.0.1:$((BASE + 100 + $1))"; }
metrics_addr() { echo "127.0.0.1:$((BASE + 200 + $1))"; }
node_dir() { echo "$DATA/n$1"; }
pid_file() { echo "$DATA/n$1/pid"; }
log_file() { echo "$DATA/n$1/node.log"; }

initial_cluster() {
  local n out=""
  for n in "${NODES[@]}"; do
    out+="${out:+,}n$n=$(raft_addr "$n")"
  done
  echo "$out"
}

endpoints() {
  local n out=""
  for n in "${NODES[@]}"; do
    out+="${out:+,}$(grpc_addr "$n")"
  done
  echo "$out"
}

check_node() {
  [[ ${1:-} =~ ^[0-9]+$ ]] || die "expected a node number 1..${#NODES[@]}, got '${1:-}'"
  (($1 >= 1 && $1 <= ${#NODES[@]})) || die "no node $1: nodes are 1..${#NODES[@]}"
}

# pid_in_file N prints the pid recorded in node N's pid file, if there is one.
pid_in_file() {
  local file pid
  file=$(pid_file "$1")
  [[ -s $file ]] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  echo "$pid"
}

# pid_alive PID succeeds if PID is a live process (a zombie, not yet reaped, is dead).
pid_alive() {
  local stat
  kill -0 "$1" 2>/dev/null || return 1
  stat=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $stat != Z* ]]
}

# node_pid N prints node N's pid if its pid file names a live `conclave serve` process.
# The command line is checked so a recycled pid is never taken for a node.
node_pid() {
  local pid args
  pid=$(pid_in_file "$1") || return 1
  pid_alive "$pid" || return 1
  args=$(ps -o args= -p "$pid" 2>/dev/null) || return 1
  [[ $args == *conclave*serve*"--id n$1"* ]] || return 1
  echo "$pid"
}

is_running() { node_pid "$1" >/dev/null; }

# with_timeout SECONDS CMD... runs CMD under timeout(1) when it exists (not on stock macOS).
with_timeout() {
  if command -v timeout >/dev/null; then
    timeout "$@"
  else
    shift
    "$@"
  fi
}

# DETACH starts a node in its own session (setsid) so a terminal's signals never reach it;
# without setsid (stock macOS) nohup at least keeps SIGHUP away.
if command -v setsid >/dev/null; then
  DETACH=(setsid)
else
  DETACH=(nohup)
fi

build() {
  echo "building bin/conclave"
  (cd "$ROOT" && go build -o bin/conclave ./cmd/conclave)
}

ensure_binary() {
  [[ -x $BIN ]] || build
}

# start_node N starts node N in its own session, detached from this shell and terminal.
# The pid is written by the process itself just before it execs the binary.
start_node() {
  local n=$1 dir pidf log pid deadline
  if pid=$(node_pid "$n"); then
    echo "n$n already running (pid $pid)"
    return 0
  fi
  dir=$(node_dir "$n")
  pidf=$(pid_file "$n")
  log=$(log_file "$n")
  mkdir -p "$dir"
  rm -f "$pidf"
  echo "=== $(date -u +%Y-%m-%dT%H:%M:%SZ) cluster.sh starting n$n" >>"$log"
  # shellcheck disable=SC2016 # $$ and $1 are expanded by the inner shell.
  "${DETACH[@]}" sh -c 'echo $$ >"$1"; shift; exec "$@"' sh "$pidf" \
    "$BIN" serve \
    --id "n$n" \
    --grpc-addr "$(grpc_addr "$n")" \
    --raft-addr "$(raft_addr "$n")" \
    --metrics-addr "$(metrics_addr "$n")" \
    --data-dir "$dir" \
    --initial-cluster "$(initial_cluster)" \
    </dev/null >>"$log" 2>&1 &
  # The pid file is written by the new process, so its pid needs no command-line check
  # (which could race with exec); a recorded pid that is no longer alive means it exited.
  deadline=$((SECONDS + 5))
  until pid=$(pid_in_file "$n"); do
    if ((SECONDS >= deadline)); then
      die "n$n wrote no pid file within 5s; see $log"
    fi
    sleep 0.1
  done
  if ! pid_alive "$pid"; then
    tail -n 20 "$log" >&2 || true
    die "n$n exited at once; see $log"
  fi
  echo "started n$n (pid $pid)"
}

# stop_nodes N... sends SIGTERM to each running node, waits up to STOP_TIMEOUT seconds
# for all of them, then sends SIGKILL to any left.
stop_nodes() {
  local n pid deadline
  local -a pending=()
  for n in "$@"; do
    if pid=$(node_pid "$n"); then
      echo "stopping n$n (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      pending+=("$n")
    fi
  done
  deadline=$((SECONDS + STOP_TIMEOUT))
  while ((${#pending[@]} > 0)); do
    local -a still=()
    for n in "${pending[@]}"; do
      if is_running "$n"; then still+=("$n"); else rm -f "$(pid_file "$n")"; fi
    done
    pending=("${still[@]+"${still[@]}"}")
    ((${#pending[@]} > 0)) || break
    if ((SECONDS >= deadline)); then
      for n in "${pending[@]}"; do
        if pid=$(node_pid "$n"); then
          echo "n$n did not stop within ${STOP_TIMEOUT}s: SIGKILL (pid $pid)" >&2
          kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$(pid_file "$n")"
      done
      break
    fi
    sleep 0.2
  done
}

# leader_of N prints the leader id node N reports, or fails if it reports none.
# It reads the StatusResponse field leader_id from `conclave cluster status -o json`
# (protojson spells it leaderId and omits it when empty; leader_id is accepted too).
leader_of() {
  local out id
  out=$(with_timeout 5 "$BIN" cluster status --endpoints "$(grpc_addr "$1")" -o json 2>/dev/null) || return 1
  id=$(grep -Eo '"leader_?[iI]d"[[:space:]]*:[[:space:]]*"[^"]+"' <<<"$out" | head -n 1 | sed -E 's/.*"([^"]+)"$/\1/')
  [[ -n $id ]] || return 1
  echo "$id"
}

# wait_leader N... waits until each named node is up and reports a leader.
wait_leader() {
  local n pid leader deadline=$((SECONDS + UP_TIMEOUT))
  local -a pending=("$@")
  echo "waiting up to ${UP_TIMEOUT}s for a leader"
  while ((${#pending[@]} > 0)); do
    local -a still=()
    for n in "${pending[@]}"; do
      if ! pid=$(pid_in_file "$n") || ! pid_alive "$pid"; then
        tail -n 20 "$(log_file "$n")" >&2 || true
        die "n$n exited; see $(log_file "$n")"
      fi
      if leader=$(leader_of "$n"); then
        echo "n$n sees leader $leader"
      else
        still+=("$n")
      fi
    done
    pending=("${still[@]+"${still[@]}"}")
    ((${#pending[@]} > 0)) || break
    ((SECONDS < deadline)) || die "no leader seen by ${pending[*]/#/n} after ${UP_TIMEOUT}s; see $DATA/n*/node.log"
    sleep 0.3
  done
}

print_endpoints() {
  local n
  echo
  printf '%-5s %-16s %-16s %s\n' node grpc raft metrics
  for n in "${NODES[@]}"; do
    printf '%-5s %-16s %-16s %s\n' "n$n" "$(grpc_addr "$n")" "$(raft_addr "$n")" "http://$(metrics_addr "$n")/metrics"
  done
  echo
  echo "export CONCLAVE_ENDPOINTS=$(endpoints)"
}

cmd_up() {
  local n
  build
  for n in "${NODES[@]}"; do
    start_node "$n"
  done
  wait_leader "${NODES[@]}"
  print_endpoints
}

cmd_down() {
  local purge=false
  case ${1:-} in
    "") ;;
    --purge) purge=true ;;
    *) usage ;;
  esac
  stop_nodes "${NODES[@]}"
  if $purge; then
    [[ -n $DATA && $DATA != / ]] || die "refusing to delete '$DATA'"
    echo "deleting $DATA"
    rm -rf -- "$DATA"
  else
    echo "stopped; data kept in $DATA (down --purge deletes it)"
  fi
}

cmd_status() {
  local n pid first=""
  for n in "${NODES[@]}"; do
    if pid=$(node_pid "$n"); then
      printf 'n%s  running  pid %-7s grpc %s\n' "$n" "$pid" "$(grpc_addr "$n")"
      first=${first:-$n}
    else
      printf 'n%s  stopped\n' "$n"
    fi
  done
  if [[ -z $first ]]; then
    echo "no node is running (scripts/cluster.sh up)"
  elif [[ -x $BIN ]]; then
    echo
    echo "\$ bin/conclave cluster status --endpoints $(grpc_addr "$first")"
    with_timeout 10 "$BIN" cluster status --endpoints "$(grpc_addr "$first")" ||
      echo "(cluster status failed on n$first)" >&2
  fi
}

cmd_kill() {
  local pid
  check_node "${1:-}"
  pid=$(node_pid "$1") || die "n$1 is not running"
  kill -KILL "$pid"
  rm -f "$(pid_file "$1")"
  echo "killed n$1 (pid $pid)"
}

cmd_start() {
  check_node "${1:-}"
  ensure_binary
  if is_running "$1"; then
    echo "n$1 already running (pid $(node_pid "$1"))"
    return 0
  fi
  start_node "$1"
  wait_leader "$1"
}

cmd_restart() {
  check_node "${1:-}"
  ensure_binary
  stop_nodes "$1"
  start_node "$1"
  wait_leader "$1"
}

cmd_logs() {
  local log
  check_node "${1:-}"
  log=$(log_file "$1")
  [[ -f $log ]] || die "no log yet for n$1 ($log)"
  if [[ -t 1 ]]; then
    exec tail -n 100 -f "$log"
  fi
  exec tail -n 100 "$log"
}

main() {
  local cmd=${1:-}
  if (($# > 0)); then shift; fi
  case $cmd in
    up) (($# == 0)) || usage; cmd_up ;;
    down) (($# <= 1)) || usage; cmd_down "$@" ;;
    status) (($# == 0)) || usage; cmd_status ;;
    kill) (($# == 1)) || usage; cmd_kill "$1" ;;
    start) (($# == 1)) || usage; cmd_start "$1" ;;
    restart) (($# == 1)) || usage; cmd_restart "$1" ;;
    logs) (($# == 1)) || usage; cmd_logs "$1" ;;
    -h | --help | help) usage 0 ;;
    *) usage ;;
  esac
}

main "$@"
