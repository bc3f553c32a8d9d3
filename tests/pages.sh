#!/usr/bin/env bash
# The report pages in a real browser: a failing run's page (a planted bug caught at its first
# seed) and a sweep page (two shards merged with that failure) are rendered in headless
# Chromium; the DOM the browser built must hold the timeline, the outlined culprit, the verdict
# and the sweep's rows, and the screenshots must not be blank. Needs Debian's chromium
# (test.sh installs it). Screenshots land in $PAGES_OUT (default: a temporary directory).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CHROME=$(command -v chromium || command -v chromium-browser || true)
[ -n "$CHROME" ] || { echo "pages: chromium is not installed" >&2; exit 1; }
cargo build -q -p zraft-sim --bin zraft-sim --config "build.rustflags=['--cfg','madsim']" --target-dir target/sim
SIM=$ROOT/target/sim/debug/zraft-sim
OUT=${PAGES_OUT:-$(mktemp -d)}
mkdir -p "$OUT"
cd "$OUT"
# early-ack (setData acknowledged before commit) is caught within the first seeds of
# minority-partition; the first failing seed's report holds the page.
if ZRAFT_BUG=early-ack "$SIM" run "$ROOT/scenarios/minority-partition.toml" --seeds 0..30 --first --summary failing.json >run.log 2>&1; then
  echo "pages: the planted bug was not caught" >&2; exit 1
fi
seed=$(sed -nE 's/^first failure: seed ([0-9]+):.*/\1/p' run.log)
[ -n "$seed" ] || { cat run.log >&2; exit 1; }
"$SIM" run "$ROOT/scenarios/kill-cluster.toml" --seeds 0..2 --shard 1/2 --summary kc1.json >/dev/null
"$SIM" run "$ROOT/scenarios/kill-cluster.toml" --seeds 0..2 --shard 2/2 --summary kc2.json >/dev/null
"$SIM" merge failing.json kc1.json kc2.json --html sweep.html >merge.log || true
runs=$(sed -nE 's/^minority-partition: ([0-9]+) seeds,.*/\1/p' run.log)
grep -q "all: 2 scenarios, $((runs + 2)) seeds" merge.log || { cat merge.log; exit 1; }

browse() { "$CHROME" --headless --no-sandbox --disable-gpu --hide-scrollbars "$@" 2>/dev/null; }
check() { # file, what, pattern, minimum count
  local n; n=$(grep -o -- "$3" "$1" | wc -l)
  if [ "$n" -lt "$4" ]; then echo "pages: $2: found $n of '$3' in $1, want >= $4" >&2; exit 1; fi
}
page=reports/minority-partition/$seed/index.html
browse --dump-dom "file://$OUT/$page" >run.dom
check run.dom "timeline" '<svg[^>]*id="timeline"' 1
check run.dom "operation bars" 'class="op' 100
check run.dom "leader spans" 'class="lead"' 1
check run.dom "faults" 'class="fault"' 1
check run.dom "culprit outlined" 'class="[a-z]* culprit"' 1
check run.dom "verdict" 'id="verdict" class="bad"><b>not linearizable' 1
browse --dump-dom "file://$OUT/sweep.html" >sweep.dom
check sweep.dom "scenario rows" '<tr class="ok"><td><a href="#s-kill-cluster"' 1
check sweep.dom "failing row" '<tr class="bad"><td><a href="#s-minority-partition"' 1
check sweep.dom "totals" '<b>1 failed</b>' 1
check sweep.dom "replay command" 'cargo sim replay' 1
browse --window-size=1400,1000 --screenshot="$OUT/run.png" "file://$OUT/$page" >/dev/null
browse --window-size=1400,1000 --screenshot="$OUT/sweep.png" "file://$OUT/sweep.html" >/dev/null
for png in run.png sweep.png; do
  size=$(stat -c %s "$png")
  [ "$size" -gt 20000 ] || { echo "pages: $png is $size bytes: blank?" >&2; exit 1; }
done
echo "pages: run page and sweep page render in $("$CHROME" --version 2>/dev/null | head -1); screenshots in $OUT"
