#!/usr/bin/env bash
# The main job: train configs/quickstart.yaml on Multi30k De->En, translate
# test_2016_flickr with beam search and print its sacreBLEU scores.
# Data: the raw files in $SEQ2SEQ_MULTI30K if set (offline), else the Hugging Face hub.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/quickstart}
seq2seq train configs/quickstart.yaml --run-dir "$RUN" --overwrite "$@"
seq2seq evaluate --checkpoint "$RUN/best.pt" --split test --output "$RUN/test_2016_flickr.hyp"
