#!/usr/bin/env bash
# The main job: train configs/quickstart.yaml on Multi30k De->En for its fixed number of
# updates, translate test_2016_flickr with beam search and print its sacreBLEU scores.
# Training runs in bf16 where the CPU has bf16 dot products (avx512_bf16 or amx_bf16 in
# /proc/cpuinfo; elsewhere bf16 is emulated and slower than fp32) or on a GPU that has it,
# else in fp32. Data: the raw files in $SEQ2SEQ_MULTI30K if set (offline), else the
# Hugging Face hub. Arguments go to `seq2seq train` (a later --set wins).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/quickstart}
precision=auto
if grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo 2>/dev/null; then
    precision=bf16
fi
seq2seq train configs/quickstart.yaml --run-dir "$RUN" --overwrite --set training.precision="$precision" "$@"
seq2seq evaluate --checkpoint "$RUN/best.pt" --split test --output "$RUN/test_2016_flickr.hyp"
