"""The ``seq2seq`` command: argparse subcommands that call the package, nothing more."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

from seq2seq.config import COMPILE_MODES, RunConfig, SearchConfig, config_to_dict, from_dict, load_config
from seq2seq.errors import ConfigError, DataError, Seq2SeqError

if TYPE_CHECKING:  # torch and the checkpoint module load only when a command needs them
    import torch

    from seq2seq.checkpoint import Loaded
    from seq2seq.search import Searchable


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seq2seq", description="Recurrent encoder-decoder translation.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a YAML config")
    p.add_argument("config", help="YAML run config (see configs/)")
    p.add_argument("--run-dir", help="where checkpoints and logs go (default: runs/CONFIG_NAME)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    p.add_argument("--overwrite", action="store_true", help="start over in a non-empty RUN_DIR")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")

    p = sub.add_parser("translate", help="translate lines of raw text")
    _add_search_args(p)
    p.add_argument("--input", help="source text, one sentence per line (default: stdin)")
    p.add_argument("--output", help="translations (default: stdout); written atomically")
    p.add_argument(
        "--attention-dir",
        help="write each line's attention weights (best hypothesis) to DIR/LINE.json, for scripts/plot_attention.py",
    )

    p = sub.add_parser("evaluate", help="translate a source file and score it with sacreBLEU")
    _add_search_args(p)
    p.add_argument("--src", help="source text, one sentence per line")
    p.add_argument("--ref", help="reference translations, one per line")
    p.add_argument("--split", choices=["dev", "test"], help="instead of --src/--ref: the checkpoint config's corpus")
    p.add_argument("--output", help="also write the translations here")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("score", help="log-probabilities of given pairs (TSV or a Moses phrase table)")
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by `seq2seq train`")
    p.add_argument("--input", help="'source<TAB>target' or 'source ||| target ||| scores' lines (default: stdin)")
    p.add_argument("--output", help="the lines with total and per-token log-probability added; written atomically")
    p.add_argument("--format", default="auto", choices=["auto", "tsv", "moses"], help="auto: moses if ' ||| '")
    p.add_argument("--batch-size", type=int, default=64, help="pairs per batch")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: every core)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    return parser


def _add_search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint",
        required=True,
        nargs="+",
        help="a checkpoint written by `seq2seq train`; several make an ensemble (search settings from the first)",
    )
    p.add_argument("--beam-size", type=int, help="1 for greedy search (default: from the checkpoint's config)")
    p.add_argument(
        "--n-best", type=int, help="hypotheses per sentence; translate then writes 'i ||| text ||| score' lines"
    )
    p.add_argument("--batch-size", type=int, help="sentences per decoding batch")
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        help="bf16: autocast matrix products; auto: bf16 on GPUs that have it (default: search.precision)",
    )
    p.add_argument(
        "--compile",
        choices=COMPILE_MODES,
        help="torch.compile the decoder's step loop (fused input-feeding GRU decoders; default: search.compile)",
    )
    p.add_argument(
        "--shortlist",
        type=int,
        metavar="K",
        help="decode over the K likeliest target pieces of each source piece plus the frequent ones; 0: all",
    )
    p.add_argument("--shortlist-frequent", type=int, metavar="F", help="frequent target pieces always in the shortlist")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: every core)")
    p.add_argument(
        "--workers", type=int, default=1, help="decode batches in N forked processes sharing the threads (CPU only)"
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


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
    search settings and the device."""
    from seq2seq.checkpoint import load_checkpoint
    from seq2seq.ensemble import Ensemble
    from seq2seq.runtime import pick_device, set_threads

    set_threads(args.threads)
    device = pick_device(args.device, "--device")
    members = [load_checkpoint(path, device) for path in args.checkpoint]
    loaded = members[0]
    for path, other in zip(args.checkpoint[1:], members[1:]):
        for side in ("src", "tgt"):
            if getattr(other, f"{side}_vocab").model_proto != getattr(loaded, f"{side}_vocab").model_proto:
                raise ConfigError(
                    f"--checkpoint: {path} has another {side} vocabulary than {args.checkpoint[0]}; "
                    "an ensemble needs models trained with the same SentencePiece models"
                )
    model: Searchable = loaded.model if len(members) == 1 else Ensemble([m.model for m in members])
    changes = {
        "beam_size": args.beam_size,
        "n_best": args.n_best,
        "batch_size": args.batch_size,
        "precision": args.precision,
        "compile": args.compile,
        "shortlist": args.shortlist,
        "shortlist_frequent": args.shortlist_frequent,
    }
    # Checked like the config file's search section (an out-of-range flag names its key).
    given = {k: v for k, v in changes.items() if v is not None}
    search = from_dict(SearchConfig, {**config_to_dict(loaded.config.search), **given}, "search")
    if search.n_best > search.beam_size:
        raise ConfigError(f"--n-best {search.n_best} exceeds the beam size {search.beam_size}")
    if search.shortlist and loaded.shortlist is None:
        raise ConfigError(
            f"--shortlist: {args.checkpoint[0]} has no shortlist table (written before shortlists); "
            "add one with scripts/add_shortlist.py, or decode with --shortlist 0"
        )
    if search.compile != "none":
        for path, member in zip(args.checkpoint, members):
            try:
                member.model.decoder.compile_steps(search.compile)
            except ValueError as e:
                raise ConfigError(f"--compile {search.compile}: {path}: {e}") from None
    if args.workers < 1 or (args.workers > 1 and device.type != "cpu"):
        raise ConfigError(f"--workers {args.workers}: must be 1, or more on the CPU only (device is {device.type})")
    return loaded, model, search, device


def cmd_train(args: argparse.Namespace) -> None:
    from seq2seq.train.loop import train

    config = load_config(args.config, args.set)
    run_dir = args.run_dir or str(Path("runs") / Path(args.config).stem)
    best = train(config, run_dir, resume=args.resume, overwrite=args.overwrite)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line, from rank 0
        print(best)


def cmd_translate(args: argparse.Namespace) -> None:
    from seq2seq.translate import attention_record, translate_lines

    loaded, model, search, device = _search_setup(args)
    if args.attention_dir:
        if loaded.config.model.decoder.type == "context":
            raise ConfigError(f"--attention-dir: {args.checkpoint[0]} has a decoder without attention (type context)")
        Path(args.attention_dir).mkdir(parents=True, exist_ok=True)
    with _input(args.input) as source, atomic_output(args.output) as out:
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

    loaded, model, search, device = _search_setup(args)
    if args.split:
        sources, references = _config_corpus(loaded.config, args.split)
    elif args.src and args.ref:
        sources, references = _read_lines(args.src), _read_lines(args.ref)
        if len(sources) != len(references):
            raise ConfigError(f"{args.src} has {len(sources)} lines but {args.ref} has {len(references)}")
    else:
        raise ConfigError("evaluate needs --src and --ref, or --split dev|test")
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
    from seq2seq.runtime import pick_device, set_threads
    from seq2seq.score import score_lines

    set_threads(args.threads)
    device = pick_device(args.device, "--device")
    loaded = load_checkpoint(args.checkpoint, device)
    with _input(args.input) as source, atomic_output(args.output) as out:
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


COMMANDS = {"train": cmd_train, "translate": cmd_translate, "evaluate": cmd_evaluate, "score": cmd_score}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        COMMANDS[args.command](args)
    except Seq2SeqError as e:
        print(f"seq2seq {args.command}: error: {e}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as e:  # streamed input (stdin or --input) that is not UTF-8
        print(
            f"seq2seq {args.command}: error: input is not valid UTF-8 ({e.reason}); convert it, e.g. with iconv",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"seq2seq {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0
