#!/usr/bin/env bash
# Runs every Go fuzz target in the repository, one at a time, each for a set time.
#
#   scripts/fuzz.sh [SECONDS]    fuzz each target for SECONDS (a whole number; default 30)
#
# Targets are found with `go test -list '^Fuzz' ./...`; each then runs alone as
#   go test -run '^$' -fuzz '^NAME$' -fuzztime SECONDSs -fuzzminimizetime 5s PACKAGE
# and gets one summary line: ok or FAIL, the target, its package, the executions and new
# interesting inputs reported last, and the wall time. A failing target has written its
# input to PACKAGE/testdata/fuzz/NAME/ (commit it with the fix: it becomes a regression
# test); the script prints the end of that target's output, goes on with the others, and
# exits non-zero if any target failed. Plain `go test ./...` runs the committed seed
# corpora (testdata/fuzz/) and the f.Add seeds as ordinary tests, without fuzzing.
#
# Environment:
#   FUZZ_MINIMIZE_TIME  -fuzzminimizetime per input (default 5s). Go's default, 60s, lets
#                       a worker spend a short run shrinking one new input (the server
#                       targets run a few thousand RPCs a second, and their seeds hold
#                       keys of over a kilobyte), so little fuzzing would get done.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

secs=${1:-30}
minimize=${FUZZ_MINIMIZE_TIME:-5s}
if [[ ! $secs =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: scripts/fuzz.sh [SECONDS]   (SECONDS a positive whole number, default 30)" >&2
  exit 2
fi

# `go test -list` prints each package's matching names, then its "ok  PACKAGE" line.
if ! listing=$(go test -list '^Fuzz' ./... 2>&1); then
  echo "$listing" >&2
  echo "fuzz.sh: cannot list the fuzz targets (does every package build?)" >&2
  exit 1
fi
targets=() # "PACKAGE NAME"
names=()
while read -r line; do
  case $line in
    Fuzz*) names+=("$line") ;;
    ok*)
      pkg=$(awk '{print $2}' <<<"$line")
      for name in ${names[@]+"${names[@]}"}; do
        targets+=("$pkg $name")
      done
      names=()
      ;;
    *) names=() ;;
  esac
done <<<"$listing"
if ((${#targets[@]} == 0)); then
  echo "fuzz.sh: no fuzz targets found" >&2
  exit 1
fi

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

echo "fuzzing ${#targets[@]} targets for ${secs}s each"
failed=0
for target in "${targets[@]}"; do
  read -r pkg name <<<"$target"
  log=$logs/$name.log
  start=$SECONDS
  result=ok
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "${secs}s" -fuzzminimizetime "$minimize" "$pkg" >"$log" 2>&1 ||
    result=FAIL
  stats=$(grep -o 'execs: [0-9]*.*new interesting: [0-9]*' "$log" | tail -n 1 | sed 's| ([0-9]*/sec)||' || true)
  printf '%-4s  %-24s  %-45s  %s  (%ds)\n' "$result" "$name" "$pkg" "${stats:-no fuzzing stats}" $((SECONDS - start))
  if [[ $result == FAIL ]]; then
    failed=$((failed + 1))
    tail -n 40 "$log" | sed 's/^/    | /'
  fi
done

echo "fuzz: ${#targets[@]} targets, $failed failed"
((failed == 0))
