#!/usr/bin/env python
"""The exported runtime (seq2seq export, translate --model) against ``seq2seq translate``
with torch, on one checkpoint: agreement and BLEU, speed, and installed size.

    python scripts/bench/export_bench.py CKPT [--src FILE --ref FILE] [--lines 1000] [--rounds 3]
        [--threads 2] [--work DIR] [--skip-speed]

1. Exports CKPT to ``WORK/export`` with ``--int8`` (unless that directory already holds a
   ``model.json``).
2. Agreement and BLEU: translates the source (default: the checkpoint config's test split,
   e.g. Multi30k test_2016_flickr) with greedy search and beam 5, by torch in float32
   (``--precision fp32``) and by the exported runtime in float32 and int8 (and two other
   int8 choices: the attention quantized too, the decoder's recurrence kept float32), and prints the
   share of lines identical to torch's float32 output and each BLEU (sacreBLEU, as seq2seq
   evaluate) with its difference to torch's.
3. Speed: process wall time (``python -m seq2seq translate``, model loading included) for the
   first ``--lines`` source lines with beam 5, each configuration once per round, rounds
   interleaved: torch fp32; torch ``--precision bf16 --workers 2 --shortlist 10`` (with a
   shortlist table); runtime fp32; runtime int8 (and int8 ``--shortlist 10``, with a table).
   Prints the median and each run.
4. Size: the installed size of onnxruntime + numpy + sentencepiece (+ pyyaml, which
   seq2seq.config needs) and of torch, each with
   the packages they require (from the installed distributions' metadata), and the time of
   ``import`` of each in a fresh interpreter.

Every command it runs is printed first, so any figure can be reproduced alone.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from seq2seq.checkpoint import read_checkpoint
from seq2seq.data.sources import load_corpus
from seq2seq.errors import Seq2SeqError
from seq2seq.evaluate import score_corpus
from seq2seq.export.quantize import KEEP_FLOAT, RECURRENCE, quantize
from seq2seq.lines import read_lines

# What seq2seq.export.runtime imports beside the standard library (pyyaml: seq2seq.config).
RUNTIME = ["onnxruntime", "numpy", "sentencepiece", "yaml"]
DISTRIBUTIONS = {"yaml": "pyyaml"}  # import name -> distribution name, where they differ
TORCH = ["torch"]


def run(command: list[str]) -> float:
    """Run ``command``, failing loudly; returns its wall time in seconds."""
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-2000:]}")
    return elapsed


def translate(model: list[str], source: Path, output: Path, flags: list[str], threads: int) -> float:
    command = [sys.executable, "-m", "seq2seq", "translate", *model, "--input", str(source), "--output", str(output)]
    return run([*command, "--threads", str(threads), *flags])


def corpus(args: argparse.Namespace, work: Path) -> tuple[Path, list[str]]:
    """The source file and the references: --src/--ref, or the checkpoint config's test split."""
    if args.src:
        return Path(args.src), read_lines(args.ref)
    try:
        config = read_checkpoint(args.checkpoint).config
    except Seq2SeqError as e:
        sys.exit(f"export_bench.py: error: {e}")
    if config.data.test is None:
        sys.exit("the checkpoint's config has no data.test: give --src and --ref")
    ds = load_corpus(config.data.test, config.data.src_lang, config.data.tgt_lang)
    source = work / "test.src"
    source.write_text("".join(line + "\n" for line in ds["src"]), encoding="utf-8")
    return source, list(ds["tgt"])


def quality(args: argparse.Namespace, work: Path, export: Path, source: Path, refs: list[str]) -> None:
    print("\n== agreement with torch fp32 and BLEU")
    systems = {
        "torch fp32": (["--checkpoint", args.checkpoint], ["--precision", "fp32"]),
        "onnx fp32": (["--model", str(export)], []),
        "onnx int8": (["--model", str(export)], ["--int8"]),
    }
    for label, keep in VARIANTS.items():
        systems[f"onnx int8, {label}"] = (["--model", str(variant(export, work, label, keep))], ["--int8"])
    rows: list[tuple[str, ...]] = []
    for beam in (1, 5):
        outputs = {}
        for name, (model, flags) in systems.items():
            out = work / f"{name.replace(' ', '_')}.beam{beam}.txt"
            translate(model, source, out, [*flags, "--beam-size", str(beam)], args.threads)
            outputs[name] = read_lines(out)
        base = outputs["torch fp32"]
        base_bleu = score_corpus(base, refs)["bleu"]
        for name, lines in outputs.items():
            same = sum(a == b for a, b in zip(lines, base)) / len(base)
            bleu = score_corpus(lines, refs)["bleu"]
            rows.append((f"beam {beam}", name, f"{100 * same:.2f}%", f"{bleu:.2f}", f"{bleu - base_bleu:+.2f}"))
    table(["search", "system", "lines = torch fp32", "BLEU", "diff"], rows)


# Other choices of what int8 keeps in float32 (seq2seq.export.quantize.KEEP_FLOAT by default).
VARIANTS = {
    "attention int8 too": (),
    "recurrence float32 too": (*KEEP_FLOAT, *RECURRENCE),
}


def variant(export: Path, work: Path, label: str, keep: tuple[str, ...]) -> Path:
    """A copy of the export whose int8 graphs keep the node name parts ``keep`` in float32."""
    target = work / ("export_" + re.sub(r"\W+", "_", label))
    if not (target / "model.json").is_file():
        shutil.copytree(export, target, dirs_exist_ok=True)
        info = json.loads((target / "model.json").read_text(encoding="utf-8"))
        for graph in info["graphs"].values():
            quantize(target, graph["file"], keep_float=keep)
    return target


def speed(args: argparse.Namespace, work: Path, export: Path, source: Path, has_shortlist: bool) -> None:
    print(f"\n== process wall time, {args.lines} lines, beam 5, loading included ({args.rounds} interleaved rounds)")
    head = work / "speed.src"
    lines = read_lines(source)[: args.lines]
    head.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    ckpt, model = ["--checkpoint", args.checkpoint], ["--model", str(export)]
    systems = {"torch fp32": (ckpt, ["--precision", "fp32"])}
    fast = ["--precision", "bf16", "--workers", "2"] + (["--shortlist", "10"] if has_shortlist else [])
    systems[f"torch {' '.join(fast)}"] = (ckpt, fast)
    systems["onnx fp32"] = (model, [])
    systems["onnx int8"] = (model, ["--int8"])
    if has_shortlist:
        systems["onnx int8 --shortlist 10"] = (model, ["--int8", "--shortlist", "10"])
    times: dict[str, list[float]] = {name: [] for name in systems}
    for _ in range(args.rounds):
        for name, (which, flags) in systems.items():
            times[name].append(translate(which, head, work / "speed.out", [*flags, "--beam-size", "5"], args.threads))
    base = statistics.median(times["torch fp32"])
    rows: list[tuple[str, ...]] = []
    for name, runs in times.items():
        median = statistics.median(runs)
        rows.append((name, f"{median:.2f}", f"{base / median:.2f}x", " ".join(f"{t:.2f}" for t in runs)))
    table(["system", "median s", "speed-up vs torch fp32", "runs (s)"], rows)


def closure(names: list[str]) -> set[str]:
    """The installed distributions ``names`` and everything they require (extras aside)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = re.split(r"[ ;<>=!~\[(]", todo.pop(), maxsplit=1)[0].lower().replace("_", "-")
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        todo += [r for r in dist.requires or [] if "extra ==" not in r]
    return seen


def installed_size(names: set[str]) -> int:
    total = 0
    for name in names:
        for file in metadata.distribution(name).files or []:
            path = Path(str(file.locate()))
            if path.is_file():
                total += path.stat().st_size
    return total


def sizes() -> None:
    print("\n== installed size and import time")
    rows: list[tuple[str, ...]] = []
    for label, names in (("runtime: onnxruntime + numpy + sentencepiece + pyyaml", RUNTIME), ("torch", TORCH)):
        dists = [DISTRIBUTIONS.get(name, name) for name in names]
        alone, deps = installed_size(set(dists)), closure(dists)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {', '.join(names)}"], check=True)
        imported = time.perf_counter() - start
        rows.append((label, f"{alone / 2**20:.0f}", f"{installed_size(deps) / 2**20:.0f}", f"{imported:.2f}"))
        print(f"{label}: with {', '.join(sorted(deps))}")
    table(["packages", "MiB", "MiB with requirements", "import s"], rows)


def table(header: list[str], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    for row in [tuple(header), tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--src", help="source lines (default: the checkpoint config's data.test)")
    parser.add_argument("--ref", help="reference lines, with --src")
    parser.add_argument("--lines", type=int, default=1000, help="source lines of the speed runs")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the speed runs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", help="where the export and the outputs go (default: a temporary directory)")
    parser.add_argument("--skip-speed", action="store_true", help="agreement, BLEU and size only")
    args = parser.parse_args()
    if bool(args.src) != bool(args.ref):
        parser.error("--src and --ref go together")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        export = work / "export"
        if not (export / "model.json").is_file():
            run([sys.executable, "-m", "seq2seq", "export", args.checkpoint, "--output", str(export), "--int8"])
        has_shortlist = (export / "shortlist.npz").is_file()
        source, refs = corpus(args, work)
        quality(args, work, export, source, refs)
        if not args.skip_speed:
            speed(args, work, export, source, has_shortlist)
        sizes()


if __name__ == "__main__":
    main()
