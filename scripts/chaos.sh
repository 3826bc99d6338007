#!/usr/bin/env bash
# Fault injection across processes, checked for linearizability.
#
#   scripts/chaos.sh [--duration 60s] [--seed 1] [--faults kill,pause,partition] [--dir DIR]
#
# Builds bin/conclave and runs `conclave chaos`: three `conclave serve` processes on free
# loopback ports with every raft link routed through a proxy the harness controls,
# concurrent clients on all nodes, faults on a schedule drawn from the seed (SIGKILL and
# restart, SIGSTOP/SIGCONT past the election timeout, isolating a node), then healing
# and the checks. The last line is `ops=N faults=F violations=V lost=L`; the exit status
# is non-zero when V or L is not zero, and the porcupine visualisation and the history
# are written to the run's directory. `bin/conclave chaos --help` lists every flag.
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/conclave ./cmd/conclave
exec bin/conclave chaos "$@"
