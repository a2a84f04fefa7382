#!/usr/bin/env python
"""Training and decoding speed of a config, through the same code paths as `seq2seq train`
and `seq2seq translate`.

    python scripts/bench/benchmark.py CONFIG [--steps N] [--warmup N] [--set KEY=VALUE ...]
                                       [--decode-sentences N] [--decode-workers N] [--json]
                                       [--cells gru,lstm_peephole,... [--rounds N]]
    python scripts/bench/benchmark.py CONFIG --data-scale N [--set KEY=VALUE ...] [--json]

Training: tokens/s over ``--steps`` updates after ``--warmup`` updates, counting the real
source and target pieces of each batch (no padding, no BOS/EOS). Decoding: sentences/s of
the config's search (beam size from ``search.beam_size``) over the first
``--decode-sentences`` sentences of data.test (data.dev if there is none), after the
training steps, so with a partly trained model; ``training.compile`` and ``search.compile``
choose the compiled step loop for each (its compilation falls in the warm-up); ``search.shortlist`` and
``--decode-workers`` as in ``seq2seq translate --shortlist/--workers``. Peak memory: the process' peak RSS.

``--data-scale N``: instead, the data path at scale. Writes a synthetic corpus of N pairs
(words drawn with Zipf's law from a 50,000-word vocabulary of random letters, 3-25 words a
sentence; the target is the source mapped word by word and reversed) to a temporary directory, then times each stage of
what ``seq2seq train`` does before its first update: reading into the Arrow cache,
SentencePiece training on a sample (``data.subwords.input_sentence_size``, 1,000,000 unless
set), encoding (``data.num_proc`` processes), the numpy arrays, the batch plan, and the
first update; reports pairs/s per stage, the time to the first step and the peak RSS of
this process and of its worker processes. The datasets cache goes to the temporary
directory too.

``--cells``: the same measurement for each cell in the encoder and the decoder (``lstmp``
projects to half the hidden size), on the same prepared data, in ``--rounds`` interleaved
rounds (so a background load hits every cell alike); prints each cell's median tokens/s and
sentences/s and their ratio to the first cell's.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seq2seq.config import RunConfig, cell_overrides, load_config
from seq2seq.data.batching import plan_batches
from seq2seq.data.prepare import RunData, load_eval_set, prepare_data
from seq2seq.data.shortlist import build_shortlist
from seq2seq.kernels import accelerate
from seq2seq.runtime import check_precision, pick_device, resolve_precision, set_threads
from seq2seq.train.loop import Trainer
from seq2seq.translate import translate_ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--decode-sentences", type=int, default=1000)
    parser.add_argument("--decode-workers", type=int, default=1, help="forked decoding processes (CPU)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--cells", help="comma-separated cells to compare, e.g. gru,lstm,lstm_peephole")
    parser.add_argument("--rounds", type=int, default=1, help="with --cells: interleaved rounds, medians reported")
    parser.add_argument("--data-scale", type=int, metavar="N", help="time the data path on N synthetic pairs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.data_scale:
        return data_scale(args)

    config = load_config(args.config, args.set)
    tc = config.training
    device = pick_device(tc.device)
    check_precision(resolve_precision(tc.precision, device), device)
    threads = set_threads(tc.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = prepare_data(config.data, Path(tmp), seed=tc.seed)
        if args.cells:
            return compare(args, data, device, threads)
        result = measure(config, data, device, Path(tmp), args)
    result = {"config": args.config, "overrides": args.set, **result, "threads": threads}
    result["peak_rss_mib"] = _peak_rss_mib()
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:24s} {value}")
    return 0


def compare(args: argparse.Namespace, data: RunData, device: torch.device, threads: int) -> int:
    cells = args.cells.split(",")
    base = load_config(args.config, args.set)
    runs: dict[str, list[dict[str, Any]]] = {cell: [] for cell in cells}
    for _ in range(args.rounds):
        for cell in cells:
            config = load_config(args.config, [*args.set, *cell_overrides(cell, base)])
            with tempfile.TemporaryDirectory() as tmp:
                runs[cell].append(measure(config, data, device, Path(tmp), args))
    rows = []
    for cell in cells:
        train = statistics.median(r["train_tokens_per_s"] for r in runs[cell])
        decode = statistics.median(r["decode_sentences_per_s"] for r in runs[cell])
        rows.append({"cell": cell, "train_tokens_per_s": train, "decode_sentences_per_s": decode})
    for row in rows:
        row["train_ratio"] = round(row["train_tokens_per_s"] / rows[0]["train_tokens_per_s"], 2)
        row["decode_ratio"] = round(row["decode_sentences_per_s"] / rows[0]["decode_sentences_per_s"], 2)
    if args.json:
        print(json.dumps({"config": args.config, "overrides": args.set, "threads": threads, "cells": rows}))
        return 0
    print(f"| cell | training tokens/s | vs {cells[0]} | decoding sentences/s | vs {cells[0]} |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['cell']} | {row['train_tokens_per_s']:,.0f} | {row['train_ratio']:.2f} "
            f"| {row['decode_sentences_per_s']:.1f} | {row['decode_ratio']:.2f} |"
        )
    return 0


def measure(
    config: RunConfig, data: RunData, device: torch.device, tmp: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Train ``args.steps`` timed updates of a fresh model, then decode; the figures."""
    tc = config.training
    torch.manual_seed(tc.seed)
    trainer = Trainer(config, tmp, data, device)
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
    if config.search.kernels and config.search.compile != config.training.compile:
        accelerate(trainer.model, config.search.compile)
    decode = partial(
        translate_ids,
        trainer.model,
        search=config.search,
        src_vocab=data.src_vocab,
        tgt_vocab=data.tgt_vocab,
        device=device,
        shortlist=data.shortlist,
        workers=args.decode_workers,
    )
    decode(src_ids[: config.search.batch_size])  # warm-up
    _sync(device)
    start = time.perf_counter()
    decode(src_ids)
    _sync(device)
    decode_seconds = time.perf_counter() - start

    return {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "precision": trainer.precision,
        "train_compile": config.training.compile,
        "decode_compile": config.search.compile,
        "train_steps": args.steps,
        "train_tokens": tokens,
        "train_seconds": round(train_seconds, 2),
        "train_tokens_per_s": round(tokens / train_seconds, 1),
        "decode_sentences": len(src_ids),
        "beam_size": config.search.beam_size,
        "decode_shortlist": config.search.shortlist,
        "decode_workers": args.decode_workers,
        "decode_seconds": round(decode_seconds, 2),
        "decode_sentences_per_s": round(len(src_ids) / decode_seconds, 1),
        "torch": torch.__version__,
    }


def write_synthetic_corpus(prefix: Path, n: int, src_lang: str, tgt_lang: str, seed: int = 0) -> None:
    """``{prefix}.{src_lang}`` and ``{prefix}.{tgt_lang}``: ``n`` pairs of random words."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyzäöü"))
    words = np.array(["".join(rng.choice(letters, size=rng.integers(2, 11))) for _ in range(50_000)])
    mapped = words[rng.permutation(len(words))]  # the "translation" of each word
    frequency = 1.0 / np.arange(1, len(words) + 1)  # Zipf: the r-th word is r times rarer than the first
    with open(f"{prefix}.{src_lang}", "w", encoding="utf-8") as src, open(f"{prefix}.{tgt_lang}", "w") as tgt:
        for start in range(0, n, 100_000):
            lengths = rng.integers(3, 26, size=min(100_000, n - start))
            ids = rng.choice(len(words), size=int(lengths.sum()), p=frequency / frequency.sum())
            ends = np.cumsum(lengths).tolist()
            starts = [0, *ends[:-1]]
            src_words, tgt_words = words[ids].tolist(), mapped[ids].tolist()  # Python strings, in C
            src.writelines(" ".join(src_words[a:b]) + "\n" for a, b in zip(starts, ends, strict=True))
            tgt.writelines(" ".join(tgt_words[a:b][::-1]) + "\n" for a, b in zip(starts, ends, strict=True))


def data_scale(args: argparse.Namespace) -> int:
    """The --data-scale measurement (see the module docstring)."""
    import datasets

    from seq2seq.data.batching import filter_pairs, to_parallel_data
    from seq2seq.data.sources import load_corpus
    from seq2seq.data.subwords import encode_dataset, prepare_vocabs

    n = args.data_scale
    sample = (
        []
        if any(s.startswith("data.subwords.input_sentence_size=") for s in args.set)
        else ["data.subwords.input_sentence_size=1000000"]
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        datasets.config.HF_DATASETS_CACHE = root / "cache"  # read at each call: nothing left behind
        started = time.perf_counter()
        config = load_config(args.config, [*sample, *args.set])
        dc = config.data
        write_synthetic_corpus(root / "train", n, dc.src_lang, dc.tgt_lang)
        write_synthetic_corpus(root / "dev", 500, dc.src_lang, dc.tgt_lang, seed=1)
        corpus_seconds = time.perf_counter() - started
        config = load_config(
            args.config,
            [
                *sample,
                *args.set,
                "data.train.format=text",
                f"data.train.path={root / 'train'}",
                "data.dev.format=text",
                f"data.dev.path={root / 'dev'}",
            ],
        )
        dc, tc = config.data, config.training
        device = pick_device(tc.device)
        threads = set_threads(tc.threads)
        stages: dict[str, float] = {}

        def stage(name: str, start: float) -> float:
            now = time.perf_counter()
            stages[f"{name}_seconds"] = round(now - start, 2)
            stages[f"{name}_peak_rss_mib"] = _peak_rss_mib()  # the peak so far
            # Now: heap (anonymous) vs pages of memory-mapped files (the Arrow cache), which
            # count in RSS but which the kernel can drop at any time.
            stages.update({f"{name}_{key}": value for key, value in _rss_now_mib().items()})
            return now

        t0 = t = time.perf_counter()
        raw = load_corpus(dc.train, dc.src_lang, dc.tgt_lang)
        t = stage("read", t)
        src_vocab, tgt_vocab = prepare_vocabs(raw, dc.subwords, root / "run", seed=tc.seed)
        t = stage("sentencepiece", t)
        encoded = encode_dataset(raw, src_vocab, tgt_vocab, dc.num_proc)
        t = stage("encode", t)
        vocab_size = max(len(src_vocab), len(tgt_vocab))
        train = filter_pairs(to_parallel_data(encoded, vocab_size), dc.max_length, name="synthetic")
        del raw, encoded  # as in prepare_data, which returns only the arrays: unmap the Arrow files
        t = stage("arrays", t)
        plan = plan_batches(train.src_lengths, train.tgt_lengths, dc.batch_tokens, dc.batch_sentences, seed=tc.seed)
        t = stage("plan", t)
        shortlist = build_shortlist(train, len(src_vocab), len(tgt_vocab))
        t = stage("shortlist", t)
        dev = load_eval_set(config.data.dev, dc, src_vocab, tgt_vocab)
        trainer = Trainer(config, root / "run", RunData(train, dev, src_vocab, tgt_vocab, shortlist), device)
        trainer.update([trainer.make(train, plan[0])])
        stage("first_update", t)
        first_step = time.perf_counter() - t0
        result = {
            "pairs": n,
            "kept_pairs": len(train),
            "batches": len(plan),
            "corpus_write_seconds": round(corpus_seconds, 1),
            **stages,
            "read_pairs_per_s": round(n / stages["read_seconds"]),
            "encode_pairs_per_s": round(n / stages["encode_seconds"]),
            "seconds_to_first_step": round(first_step, 1),
            "num_proc": dc.num_proc,
            "input_sentence_size": dc.subwords.input_sentence_size,
            "threads": threads,
            "peak_rss_mib": _peak_rss_mib(),
            "workers_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:24s} {value}")
    return 0


def _peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _rss_now_mib() -> dict[str, float]:
    """RssAnon and RssFile of this process now, from /proc (Linux; empty elsewhere)."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in lines if line.startswith(("RssAnon", "RssFile")))
    return {f"{key.lower()}_mib": round(int(value.split()[0]) / 1024, 1) for key, value in fields.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    sys.exit(main())
