#!/usr/bin/env bash
# Runs every Go fuzz target of the module for the given time each: a
# duration (3s) or a number of executions (10000000x), as go test's
# -fuzztime takes. The parser targets and the session targets
# (adapters/milter FuzzMTASession, backends/milter FuzzBackendReplies) alike.
set -euo pipefail
t=${1:-3s}
cd "$(dirname "$0")/.."
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
for pkg in $($GO list ./...); do
  dir=$($GO list -f '{{.Dir}}' "$pkg")
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "fuzz $pkg $f ($t)"
    $GO test "$pkg" -run '^$' -fuzz "^$f\$" -fuzztime "$t" >/tmp/fuzz.$$.log 2>&1 || { cat /tmp/fuzz.$$.log; exit 1; }
  done
done
rm -f /tmp/fuzz.$$.log
