#!/usr/bin/env bash
# A sweep over every scenario (or those in SCENARIOS="swarm state-aware"), or one shard of it,
# writing one JSON summary per scenario for `zraft-sim merge`:
#
#   scripts/sweep.sh SEEDS [SHARD] [OUT]
#   scripts/sweep.sh 0..667                    # every seed of 0..667 of every scenario, here
#   scripts/sweep.sh 0..667 1/2 out/shard1     # machine 1 of 2: every other seed, from 0
#   scripts/sweep.sh 0..667 2/2 out/shard2     # machine 2 of 2: every other seed, from 1
#   target/sim/release/zraft-sim merge out/*/*.json --html reports/sweep/index.html
#
# SHARD is i/n (default 1/1); OUT defaults to reports/sweep/<SHARD with / as -of->. JOBS
# (default 2) seeds run in parallel. Exits 1 if any seed failed (after running them all).
set -uo pipefail
cd "$(dirname "$0")/.."
SEEDS=${1:?usage: scripts/sweep.sh SEEDS [SHARD] [OUT]}
SHARD=${2:-1/1}
OUT=${3:-reports/sweep/${SHARD/\//-of-}}
JOBS=${JOBS:-2}
cargo build -q -p zraft-sim --bin zraft-sim --release --config "build.rustflags=['--cfg','madsim']" --target-dir target/sim || exit 2
mkdir -p "$OUT"
if [[ -n ${SCENARIOS:-} ]]; then
  files=(); for s in $SCENARIOS; do files+=("scenarios/$s.toml"); done
else
  files=(scenarios/*.toml)
fi
rc=0
for f in "${files[@]}"; do
  name=$(basename "$f" .toml)
  target/sim/release/zraft-sim run "$f" --seeds "$SEEDS" --shard "$SHARD" --jobs "$JOBS" \
    --summary "$OUT/$name.${SHARD/\//-of-}.json" || rc=1
done
echo "summaries in $OUT; merge: target/sim/release/zraft-sim merge $OUT/*.json --html $OUT/index.html"
exit $rc
