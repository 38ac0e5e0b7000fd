#!/usr/bin/env bash
# make run: two example milters and pmult in front of them (examples/demo.toml).
# pmult listens on inet:127.0.0.1:7357; Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
./bin/demomilter -listen inet:127.0.0.1:7358 -name demo1 &
p1=$!
./bin/demomilter -listen inet:127.0.0.1:7359 -name demo2 &
p2=$!
trap 'kill $p1 $p2 2>/dev/null; wait $p1 $p2 2>/dev/null' EXIT
echo "pmult: point your MTA at inet:127.0.0.1:7357 (Postfix: smtpd_milters = inet:127.0.0.1:7357)"
./bin/pmult -c examples/demo.toml --stderr
