#!/usr/bin/env bash
# One shrunk scenario per planted bug the harness catches (issue 14): for each variant of
# reports/planted-bugs.md caught in the system harness, `zraft-sim shrink` its first failing
# seed (under ZRAFT_BUG=<variant>) into scenarios/shrunk/<variant>.toml, a pinned scenario that
# replays the smaller failure; prints a markdown table of sizes before and after.
#
#   scripts/shrink-variants.sh > reports/shrunk.md        # a few minutes on 2 cores
#
# SIM=<binary> uses a zraft-sim already built. sim/tests/broken_variants.rs replays every scenarios/shrunk/*.toml under its bug.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${SIM:-}" ]; then
  cargo build -q -p zraft-sim --bin zraft-sim --release --config "build.rustflags=['--cfg','madsim']" --target-dir target/sim
  SIM=target/sim/release/zraft-sim
fi
mkdir -p scenarios/shrunk
echo "Shrunk planted bugs (\`scripts/shrink-variants.sh\`, build $(git rev-parse --short HEAD)): each variant's first failing seed from reports/planted-bugs.md, shrunk while the same checker still fails; \`ZRAFT_BUG=<variant> cargo sim replay scenarios/shrunk/<variant>.toml --seed <seed> --trace\` replays it."
echo
echo "| variant | from | checker | before | after | runs | wall |"
echo "|---|---|---|---|---|---|---|"
grep '^| `' reports/planted-bugs.md | while IFS='|' read -r _ variant _ _ found _; do
  v=$(tr -d '` ' <<<"$variant")
  found=$(sed 's/^ *//; s/ *$//' <<<"$found")
  if [[ ! $found =~ ^([a-z0-9-]+),\ seed\ ([0-9]+)$ ]]; then
    echo "| \`$v\` | not caught in the system harness | | | | | |"
    continue
  fi
  sc=${BASH_REMATCH[1]}; seed=${BASH_REMATCH[2]}
  if ! out=$(ZRAFT_BUG=$v "$SIM" shrink "scenarios/$sc.toml" --seed "$seed" --out "scenarios/shrunk/$v.toml" 2>&1); then
    echo "| \`$v\` | $sc, seed $seed | shrinking failed: $(tail -1 <<<"$out" | cut -c1-80) | | | | |"
    continue
  fi
  kind=$(sed -nE 's/.*: fails with (.*): [0-9]+ faults.*/\1/p' <<<"$out" | head -1)
  before=$(sed -n 's/^before: //p' <<<"$out")
  after=$(sed -n 's/^after:  //p' <<<"$out")
  runs=$(sed -nE 's/^([0-9]+) runs, wall ([0-9.]+) s.*/\1/p' <<<"$out")
  wall=$(sed -nE 's/^([0-9]+) runs, wall ([0-9.]+) s.*/\2 s/p' <<<"$out")
  echo "| \`$v\` | $sc, seed $seed | $kind | $before | $after | $runs | $wall |"
done
