#!/usr/bin/env python
"""Training and decoding speed of a config, through the same code paths as `seq2seq train`
and `seq2seq translate`.

    python scripts/benchmark.py CONFIG [--steps N] [--warmup N] [--set KEY=VALUE ...]
                                       [--decode-sentences N] [--json]

Training: tokens/s over ``--steps`` updates after ``--warmup`` updates, counting the real
source and target pieces of each batch (no padding, no BOS/EOS). Decoding: sentences/s of
the config's search (beam size from ``search.beam_size``) over the first
``--decode-sentences`` sentences of data.test (data.dev if there is none), after the
training steps, so with a partly trained model. Peak memory: the process' peak RSS.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from seq2seq.config import load_config
from seq2seq.data.batching import plan_batches
from seq2seq.data.prepare import load_eval_set, prepare_data
from seq2seq.train.device import check_precision, pick_device, set_threads
from seq2seq.train.loop import Trainer
from seq2seq.translate import translate_ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--decode-sentences", type=int, default=1000)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    config = load_config(args.config, args.set)
    tc = config.training
    device = pick_device(tc.device)
    check_precision(tc.precision, device)
    threads = set_threads(tc.threads)
    torch.manual_seed(tc.seed)
    with tempfile.TemporaryDirectory() as tmp:
        data = prepare_data(config.data, Path(tmp), seed=tc.seed)
        trainer = Trainer(config, Path(tmp), data, device)
        plan = plan_batches(
            data.train.src_lengths,
            data.train.tgt_lengths,
            config.data.batch_tokens,
            config.data.batch_sentences,
            seed=tc.seed,
        )
        needed = (args.warmup + args.steps) * tc.accumulate
        plan = (plan * (needed // len(plan) + 1))[:needed]
        groups = [plan[i : i + tc.accumulate] for i in range(0, needed, tc.accumulate)]
        tokens, start = 0, 0.0
        for i, group in enumerate(groups):
            if i == args.warmup:
                _sync(device)
                start = time.perf_counter()
            batches = [trainer.make(data.train, idx) for idx in group]
            trainer.update(batches)
            if i >= args.warmup:
                tokens += sum(b.num_tokens for b in batches)
        _sync(device)
        train_seconds = time.perf_counter() - start

        corpus = config.data.test or config.data.dev
        test = load_eval_set(corpus, config.data, data.src_vocab, data.tgt_vocab)
        src_ids = test.src_ids[: args.decode_sentences]
        trainer.model.eval()
        translate_ids(
            trainer.model, src_ids[: config.search.batch_size], config.search, data.src_vocab, data.tgt_vocab, device
        )  # warm-up
        _sync(device)
        start = time.perf_counter()
        translate_ids(trainer.model, src_ids, config.search, data.src_vocab, data.tgt_vocab, device)
        _sync(device)
        decode_seconds = time.perf_counter() - start

    result = {
        "config": args.config,
        "overrides": args.set,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "precision": tc.precision,
        "threads": threads,
        "train_steps": args.steps,
        "train_tokens": tokens,
        "train_seconds": round(train_seconds, 2),
        "train_tokens_per_s": round(tokens / train_seconds, 1),
        "decode_sentences": len(src_ids),
        "beam_size": config.search.beam_size,
        "decode_seconds": round(decode_seconds, 2),
        "decode_sentences_per_s": round(len(src_ids) / decode_seconds, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch": torch.__version__,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:24s} {value}")
    return 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    sys.exit(main())
