"""What each ``seq2seq`` subcommand does, given its parsed arguments (:mod:`seq2seq.cli`
parses them). The cheap checks come first: flags, input files, then the checkpoints."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

from seq2seq.config import RunConfig, SearchConfig, check_n_best, load_config
from seq2seq.errors import ConfigError, DataError

if TYPE_CHECKING:  # torch and the checkpoint module load only when a command needs them
    import torch

    from seq2seq.checkpoint import Loaded
    from seq2seq.search import Searchable

# Search flags: each overrides the search setting of its name (SearchConfig) and is checked as
# that config key is, when the command line is parsed.
SEARCH_FLAGS = (
    "beam_size",
    "n_best",
    "batch_size",
    "precision",
    "kernels",
    "compile",
    "shortlist",
    "shortlist_frequent",
)


@contextmanager
def atomic_output(path: str | None) -> Iterator[IO[str]]:
    """Write to a temporary file beside ``path`` and rename it into place at the end, so an
    interrupted run never leaves a half-written output; ``None`` means stdout."""
    if path is None:
        yield sys.stdout
        return
    from seq2seq.atomic import atomic_open

    with atomic_open(path, "w", encoding="utf-8") as f:
        yield f


@contextmanager
def _input(path: str | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdin
        return
    try:
        f = open(path, encoding="utf-8")  # noqa: SIM115 (closed below; OSError must be ours)
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}") from e
    with f:
        yield f


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\r\n") for line in f]
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from e


def _search_setup(args: argparse.Namespace) -> tuple[Loaded, Searchable, SearchConfig, torch.device]:
    """The first checkpoint (config, vocabularies), the model or ensemble to search, the
    search settings (the first checkpoint's, overridden by the flags given) and the device.
    The checks that need no checkpoint run before any is loaded."""
    from seq2seq.checkpoint import load_checkpoint, vocab_difference
    from seq2seq.ensemble import Ensemble
    from seq2seq.kernels import accelerate
    from seq2seq.runtime import pick_device, set_threads
    from seq2seq.translate import check_shortlist, check_workers

    given = {name: getattr(args, name) for name in SEARCH_FLAGS if getattr(args, name) is not None}
    if "n_best" in given and "beam_size" in given:
        check_n_best(given["n_best"], given["beam_size"])
    set_threads(args.threads)
    device = pick_device(args.device, "--device")
    check_workers(args.workers, device, "--workers")

    members = [load_checkpoint(path, device) for path in args.checkpoint]
    loaded = members[0]
    for path, other in zip(args.checkpoint[1:], members[1:]):
        side = vocab_difference(loaded, other)
        if side is not None:
            raise ConfigError(
                f"--checkpoint: {path} has another {side} vocabulary than {args.checkpoint[0]}; "
                "an ensemble needs models trained with the same SentencePiece models"
            )
    model: Searchable = loaded.model if len(members) == 1 else Ensemble([m.model for m in members])
    search = dataclasses.replace(loaded.config.search, **given)  # SearchConfig checks n_best against beam_size
    check_shortlist(search, loaded.shortlist, args.checkpoint[0])
    if search.kernels:
        for path, member in zip(args.checkpoint, members):
            try:
                accelerate(member.model, search.compile)
            except ValueError as e:
                raise ConfigError(f"--compile {search.compile}: {path}: {e}") from None
    return loaded, model, search, device


def cmd_train(args: argparse.Namespace) -> None:
    from seq2seq.train.loop import train

    config = load_config(args.config, args.set)
    run_dir = args.run_dir or str(Path("runs") / Path(args.config).stem)
    best = train(config, run_dir, resume=args.resume, overwrite=args.overwrite)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line, from rank 0
        print(best)


def cmd_translate(args: argparse.Namespace) -> None:
    with _input(args.input) as source:
        _translate(args, source)


def _translate(args: argparse.Namespace, source: IO[str]) -> None:
    from seq2seq.translate import attention_record, translate_lines

    loaded, model, search, device = _search_setup(args)
    if args.attention_dir:
        if loaded.config.model.decoder.type == "context":
            raise ConfigError(f"--attention-dir: {args.checkpoint[0]} has a decoder without attention (type context)")
        Path(args.attention_dir).mkdir(parents=True, exist_ok=True)
    with atomic_output(args.output) as out:
        chunk = 1 if source.isatty() else 10_000  # interactive: answer each line at once
        read: deque[str] = deque()  # lines read but not yet answered, for the attention files
        outputs = translate_lines(
            model,
            _remember(source, read),
            search,
            loaded.src_vocab,
            loaded.tgt_vocab,
            device,
            chunk_lines=chunk,
            attention=bool(args.attention_dir),
            shortlist=loaded.shortlist,
            workers=args.workers,
        )
        for i, nbest in enumerate(outputs):
            line = read.popleft()
            if search.n_best == 1:
                out.write(nbest[0][0] + "\n")
            else:  # Moses n-best format
                out.writelines(f"{i} ||| {text} ||| {hyp.score:.4f}\n" for text, hyp in nbest)
            out.flush()
            if args.attention_dir and nbest[0][1].attention is not None:  # None: an empty line
                record = attention_record(i, line, nbest[0][1], loaded.src_vocab, loaded.tgt_vocab)
                with atomic_output(str(Path(args.attention_dir) / f"{i:06d}.json")) as f:
                    json.dump(record, f)


def _remember(lines: Iterable[str], read: deque[str]) -> Iterator[str]:
    for line in lines:
        read.append(line)
        yield line


def cmd_evaluate(args: argparse.Namespace) -> None:
    from seq2seq.evaluate import format_scores, score_corpus
    from seq2seq.translate import translate_lines

    if bool(args.split) == bool(args.src or args.ref) or bool(args.src) != bool(args.ref):
        raise ConfigError("evaluate needs --src and --ref, or --split dev|test")
    if args.src:  # read before any checkpoint is loaded: a wrong path fails at once
        sources, references = _read_lines(args.src), _read_lines(args.ref)
        if len(sources) != len(references):
            raise DataError(
                f"{args.src} has {len(sources)} lines but {args.ref} has {len(references)}: "
                "every source line needs exactly one reference"
            )
    loaded, model, search, device = _search_setup(args)
    if args.split:
        sources, references = _config_corpus(loaded.config, args.split)
    search = dataclasses.replace(search, n_best=1)
    outputs = translate_lines(
        model,
        sources,
        search,
        loaded.src_vocab,
        loaded.tgt_vocab,
        device,
        shortlist=loaded.shortlist,
        workers=args.workers,
    )
    hypotheses = [nbest[0][0] for nbest in outputs]
    if args.output:
        with atomic_output(args.output) as out:
            out.writelines(h + "\n" for h in hypotheses)
    scores = score_corpus(hypotheses, references)
    print(json.dumps(scores) if args.json else format_scores(scores))


def cmd_score(args: argparse.Namespace) -> None:
    from seq2seq.checkpoint import load_checkpoint
    from seq2seq.kernels import accelerate
    from seq2seq.runtime import pick_device, set_threads

    with _input(args.input) as source:
        set_threads(args.threads)
        device = pick_device(args.device, "--device")
        loaded = load_checkpoint(args.checkpoint, device)
        if loaded.config.search.kernels:
            accelerate(loaded.model)
        _score(args, loaded, source, device)


def _score(args: argparse.Namespace, loaded: Loaded, source: IO[str], device: torch.device) -> None:
    from seq2seq.score import score_lines

    with atomic_output(args.output) as out:
        lines = score_lines(
            loaded.model,
            source,
            loaded.src_vocab,
            loaded.tgt_vocab,
            device,
            fmt=args.format,
            name=args.input or "<stdin>",
            batch_size=args.batch_size,
        )
        for line in lines:
            out.write(line + "\n")


def _config_corpus(config: RunConfig, split: str) -> tuple[list[str], list[str]]:
    from seq2seq.data.sources import load_corpus

    corpus = config.data.dev if split == "dev" else config.data.test
    if corpus is None:
        raise ConfigError(f"the checkpoint's config has no data.{split}; pass --src and --ref")
    ds = load_corpus(corpus, config.data.src_lang, config.data.tgt_lang)
    return ds["src"], ds["tgt"]


def cmd_average(args: argparse.Namespace) -> None:
    run_dir: Path | None = args.run_dir
    last: int | None = args.last
    paths: list[Path] = args.checkpoints
    if run_dir is not None:
        if paths:
            raise ConfigError("give either CKPT files or --run-dir, not both")
        if last is None or last < 1:
            raise ConfigError("--run-dir needs --last N with N >= 1")
    elif not paths:
        raise ConfigError("give CKPT files, or --run-dir DIR --last N")
    elif last is not None:
        raise ConfigError("--last goes with --run-dir")
    from seq2seq.average import average_checkpoints, checkpoint_step, run_dir_checkpoints
    from seq2seq.checkpoint import write_checkpoint

    if run_dir is not None and last is not None:
        paths = run_dir_checkpoints(run_dir, last)
    stored = average_checkpoints(paths)
    write_checkpoint(args.output, stored)
    averaged = [v for v in stored.weights.values() if v.is_floating_point()]
    print(f"averaged {len(paths)} checkpoint(s):")
    for path in paths:
        step = checkpoint_step(path)
        print(f"  {path}" + (f" (step {step})" if step is not None else ""))
    print(
        f"{len(averaged)} floating-point tensors ({sum(v.numel() for v in averaged):,} values) averaged, "
        f"{len(stored.weights) - len(averaged)} integer/bool buffers copied -> {args.output}"
    )


def cmd_plot_attention(args: argparse.Namespace) -> None:
    from seq2seq.attention_plot import plot_attention, read_attention

    att = read_attention(args.json)
    plot_attention(att, args.output, args.dpi, title=None if att.line is not None else args.json.name)
    print(f"{args.json} -> {args.output} ({len(att.target)} target x {len(att.source)} source pieces)")


COMMANDS = {
    "train": cmd_train,
    "translate": cmd_translate,
    "evaluate": cmd_evaluate,
    "score": cmd_score,
    "average": cmd_average,
    "plot-attention": cmd_plot_attention,
}
