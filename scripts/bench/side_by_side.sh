#!/usr/bin/env bash
# Training speed of seq2seq and OpenNMT-py side by side, back to back, on this machine:
# the peers' own bench.sh (../shared/peers) for N updates, then scripts/bench/benchmark.py on the
# same model (configs/benchmark.yaml) for N updates in each precision given, ROUNDS times
# in alternation so a drifting machine hits both alike. One JSON line per measurement
# goes to stdout (the peers' bench.json, then ours). A precision written P+compile runs with
# training.compile and search.compile set to default (10 warm-up updates for the compilation).
#
#   PEERS=/path/to/peer/venvs bash scripts/bench/side_by_side.sh [N=300] [ROUNDS=1] [PRECISIONS="fp32 bf16"]
#
# Needs the peers installed and their data prepared (../shared/peers/install.sh, prepare.sh)
# and SEQ2SEQ_MULTI30K pointing at the raw Multi30k files.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-300}
ROUNDS=${2:-1}
PRECISIONS=${3:-fp32 bf16}
SHARED=${SHARED:-../shared}
: "${PEERS:?set PEERS to the directory that holds the peer venvs and data}"
for round in $(seq "$ROUNDS"); do
    bash "$SHARED/peers/bench.sh" onmt "$N" "side_by_side_$round" >&2
    cat "$PEERS/runs/onmt/side_by_side_$round.meta/bench.json"
    for entry in $PRECISIONS; do
        precision=${entry%+compile}
        extra=(--warmup 5)
        if [[ $entry == *+compile ]]; then
            extra=(--warmup 10 --set training.compile=default --set search.compile=default)
        fi
        python scripts/bench/benchmark.py configs/benchmark.yaml --steps "$N" "${extra[@]}" \
            --set training.threads=2 --set "training.precision=$precision" --json
    done
done
