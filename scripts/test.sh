#!/usr/bin/env bash
# Runs the whole Conclave test suite from the repo root, whatever the current directory.
#
#   scripts/test.sh                  gofmt, go vet, buf lint + generated-code freshness, go test -race
#   then a 60 s seeded chaos run (scripts/chaos.sh; CONCLAVE_CHAOS_DURATION=0 skips it)
#   CONCLAVE_FUZZ=1 scripts/test.sh  also runs every fuzz target for 10 s (scripts/fuzz.sh)
#
# Stops at the first failing step and exits non-zero. CI runs it through .ci/run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PATH="$(go env GOPATH)/bin:$PATH"
export PATH

step=""
banner() {
  step=$1
  printf '\n==> %s\n' "$step"
}

on_exit() {
  local rc=$?
  if ((rc != 0)); then
    printf '\nFAIL: %s (exit %d)\n' "${step:-setup}" "$rc" >&2
  fi
}
trap on_exit EXIT

banner "gofmt -l ."
unformatted=$(gofmt -l .)
if [[ -n $unformatted ]]; then
  echo "these files need gofmt -w:" >&2
  echo "$unformatted" >&2
  exit 1
fi
echo "all Go files are gofmt'd"

banner "go vet ./..."
go vet ./...

banner "scripts/gen.sh --check (buf lint, generated code fresh)"
scripts/gen.sh --check

banner "go test -race -count=1 -timeout 20m ./..."
go test -race -count=1 -timeout 20m ./...

# A short seeded fault-injection run across processes, checked with porcupine.
# CONCLAVE_CHAOS_DURATION=0 skips it; CONCLAVE_CHAOS_SEED picks another schedule.
if [[ ${CONCLAVE_CHAOS_DURATION:-60s} != 0 ]]; then
  banner "scripts/chaos.sh --duration ${CONCLAVE_CHAOS_DURATION:-60s} --seed ${CONCLAVE_CHAOS_SEED:-1}"
  scripts/chaos.sh --duration "${CONCLAVE_CHAOS_DURATION:-60s}" --seed "${CONCLAVE_CHAOS_SEED:-1}"
fi

if [[ ${CONCLAVE_FUZZ:-0} == 1 ]]; then
  banner "scripts/fuzz.sh 10 (every fuzz target, 10 s each)"
  scripts/fuzz.sh 10
fi

step=""
printf '\nPASS: all checks passed\n'
