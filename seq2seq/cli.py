"""The ``seq2seq`` command line: the argument parser and ``main``. What each subcommand does
is in :mod:`seq2seq.commands`; only these two modules print."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from seq2seq.commands import COMMANDS, SEARCH_FLAGS
from seq2seq.config import DEVICES, SearchConfig, TrainingConfig, check_value, field_choices
from seq2seq.errors import ConfigError, Seq2SeqError


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
        help="write each line's attention weights (best hypothesis) to DIR/LINE.json, for seq2seq plot-attention",
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
    p.add_argument("--batch-size", type=_config_value(SearchConfig, "batch_size"), default=64, help="pairs per batch")
    _add_runtime_args(p)

    p = sub.add_parser("average", help="average the weights of checkpoints of one model (Vaswani et al. 2017)")
    p.add_argument("checkpoints", nargs="*", type=Path, metavar="CKPT", help="checkpoints to average")
    p.add_argument("--run-dir", type=Path, help="instead: the --last N RUN_DIR/ckpt-*.pt with the highest steps")
    p.add_argument("--last", type=int, metavar="N", help="how many checkpoints of --run-dir")
    p.add_argument("--output", type=Path, required=True, help="the averaged checkpoint; written atomically")

    p = sub.add_parser("plot-attention", help="draw a file of translate --attention-dir as a PNG (needs matplotlib)")
    p.add_argument("json", type=Path, metavar="JSON", help="one DIR/LINE.json of translate --attention-dir")
    p.add_argument("--output", type=Path, required=True, metavar="PNG", help="the image; written atomically")
    p.add_argument("--dpi", type=int, default=150)
    return parser


def _config_value(cls: type[Any], name: str) -> Callable[[str], Any]:
    """An argparse ``type``: the flag's text, read as YAML, checked as the field ``name`` of
    the config dataclass ``cls`` is (one rule for the config file and the flag)."""

    def parse(text: str) -> Any:
        try:
            return check_value(cls, name, yaml.safe_load(text), name)
        except (ConfigError, yaml.YAMLError) as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix(f"{name}: ")) from None

    parse.__name__ = name  # argparse names the type in some messages
    return parse


def _add_runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=_config_value(TrainingConfig, "threads"),
        default=0,
        help="CPU threads (default: every core)",
    )
    p.add_argument("--device", default="auto", choices=DEVICES)


def _add_search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint",
        required=True,
        nargs="+",
        help="a checkpoint written by `seq2seq train`; several make an ensemble (search settings from the first)",
    )
    helps = {
        "beam_size": "1 for greedy search",
        "n_best": "hypotheses per sentence; translate then writes 'i ||| text ||| score' lines",
        "batch_size": "sentences per decoding batch",
        "precision": "bf16: autocast matrix products; auto: bf16 on GPUs that have it",
        "kernels": "true: the fast paths of seq2seq.kernels; false: the plain model alone",
        "compile": "torch.compile the decoder's step loop (fused input-feeding GRU decoders)",
        "shortlist": "decode over the K likeliest target pieces of each source piece plus the frequent ones; 0: all",
        "shortlist_frequent": "frequent target pieces always in the shortlist",
    }
    metavars = {"shortlist": "K", "shortlist_frequent": "F"}
    for name in SEARCH_FLAGS:
        kind = {"choices": field_choices(SearchConfig, name)} if name in ("precision", "compile") else {}
        p.add_argument(
            f"--{name.replace('_', '-')}",
            type=_config_value(SearchConfig, name),
            metavar=metavars.get(name),
            help=f"{helps[name]} (default: the checkpoint's search.{name})",
            **kind,  # type: ignore[arg-type]
        )
    _add_runtime_args(p)
    p.add_argument(
        "--workers", type=int, default=1, help="decode batches in N forked processes sharing the threads (CPU only)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a bad flag (2, after argparse's message)
        return e.code if isinstance(e.code, int) else 2
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
    except OSError as e:  # e.g. an output that cannot be written
        print(f"seq2seq {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"seq2seq {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0
