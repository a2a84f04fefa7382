"""The ``seq2seq`` command line: the argument parser and ``main``. What each subcommand does
is in :mod:`seq2seq.commands`; only these two modules print.

Every number a flag takes is checked here, when the command line is parsed: a flag that sets
a config key with that key's rule (:func:`_config_value`), any other with :func:`_number`.
``main`` turns every failure into one line on stderr and an exit code (2: something the user
can fix; 130: Ctrl-C; 1: a bug), with the traceback only under ``--debug`` or
``SEQ2SEQ_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from seq2seq.commands import COMMANDS, SEARCH_FLAGS
from seq2seq.config import DEVICES, SearchConfig, TrainingConfig
from seq2seq.errors import ConfigError, Seq2SeqError
from seq2seq.schema import check_number, check_value, field_choices, yaml_problem

DEBUG_VARIABLE = "SEQ2SEQ_DEBUG"  # 1: as --debug (tracebacks shown)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seq2seq", description="Recurrent encoder-decoder translation.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a YAML config")
    p.add_argument("config", help="YAML run config (see configs/)")
    p.add_argument("--run-dir", type=_directory, help="where checkpoints and logs go (default: runs/CONFIG_NAME)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    p.add_argument("--overwrite", action="store_true", help="start over in a non-empty RUN_DIR")
    p.add_argument(
        "--allow-data-change",
        action="store_true",
        help="with --resume: go on although the training data differ from those the run was trained on",
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")

    p = sub.add_parser("translate", help="translate lines of raw text")
    _add_search_args(p, exported=True)
    p.add_argument("--int8", action="store_true", help="with --model: the int8 graphs of `seq2seq export --int8`")
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
    p.add_argument("--run-dir", type=_directory, help="instead: the --last N RUN_DIR/ckpt-*.pt with the highest steps")
    p.add_argument("--last", type=_number(int, 1), metavar="N", help="how many checkpoints of --run-dir")
    p.add_argument("--output", type=Path, required=True, help="the averaged checkpoint; written atomically")

    p = sub.add_parser("plot-attention", help="draw a file of translate --attention-dir as a PNG (needs matplotlib)")
    p.add_argument("json", type=Path, metavar="JSON", help="one DIR/LINE.json of translate --attention-dir")
    p.add_argument("--output", type=Path, required=True, metavar="PNG", help="the image; written atomically")
    p.add_argument("--dpi", type=_number(int, 1, MAX_DPI), default=150, help="dots per inch (default: %(default)s)")

    _add_serve_parser(sub)

    p = sub.add_parser("export", help="write a checkpoint as ONNX graphs for the torch-free runtime (needs [onnx])")
    p.add_argument("checkpoint", help="a checkpoint written by `seq2seq train`")
    p.add_argument("--output", type=_directory, required=True, metavar="DIR", help="the export directory")
    p.add_argument("--int8", action="store_true", help="also write dynamically quantized (int8) graphs")
    p.add_argument("--opset", type=_number(int, 14, 21), default=17, help="ONNX opset (default: %(default)s)")
    for command in [parser, *sub.choices.values()]:  # before or after the sub-command
        command.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,  # a sub-command's default would hide the main parser's flag
            help=f"show the traceback of an error (also: {DEBUG_VARIABLE}=1)",
        )
    return parser


def _add_serve_parser(sub: Any) -> None:
    from seq2seq.serve.options import Limits

    p = sub.add_parser("serve", help="translate over HTTP, with a web page (needs the extra: seq2seq-rnn[serve])")
    p.add_argument(
        "--checkpoint",
        required=True,
        action="append",
        metavar="[ID=]PATH",
        help="a model to serve, as ID=PATH (one plain PATH is the id 'default'); repeat for several, the first "
        "is the default model; PATH may be an export directory",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=_number(int, 0, 65535), default=8000)
    defaults = Limits()
    limits = {
        "max_sentences": (_number(int, 1), "sentences per request (more: 413)"),
        "max_chars": (_number(int, 1), "characters per sentence (more: 413)"),
        "max_beam": (_number(int, 1), "largest beam_size a request may ask for (more: 422)"),
        "max_queued": (_number(int, 1), "sentences waiting for a batch, all requests together (more: 503)"),
        "timeout": (_number(float, 0.0), "seconds a request may wait for its translations (then 504)"),
        "batch_wait_ms": (_number(float, 0.0, 10_000.0), "how long a batch's first sentence waits for others to join"),
        "batch_tokens": (_number(int, 1), "source pieces per batch: a batch closes once it holds this many"),
    }
    for name, (kind, text) in limits.items():
        p.add_argument(
            f"--{name.replace('_', '-')}",
            type=kind,
            default=getattr(defaults, name),
            help=f"{text} (default: %(default)s)",
        )
    _add_search_flags(p)  # the models' defaults; a request may ask for its own beam_size and n_best
    _add_runtime_args(p)
    _add_workers_flag(p, "decode in N forked processes of one thread each (CPU only; fastest with N = the cores)")


def _config_value(cls: type[Any], name: str) -> Callable[[str], Any]:
    """An argparse ``type``: the flag's text, read as YAML, checked as the field ``name`` of
    the config dataclass ``cls`` is (one rule for the config file and the flag)."""
    return _parsed(name, lambda value: check_value(cls, name, value, name))


MAX_DPI = 2_400  # a plot-attention image past this is gigabytes


def _number(kind: type[int] | type[float], low: float | None = None, high: float | None = None) -> Callable[[str], Any]:
    """An argparse ``type`` for a number that sets no config key (``--workers``, ``--last``,
    ``--dpi``, a port, a limit): an int or a finite float within [``low``, ``high``]
    (``None``: unbounded), with the messages a config key's range gets, e.g. ``_number(int, 1)``
    for a positive integer, ``_number(int, 0)`` for a non-negative one."""
    return _parsed(kind.__name__, lambda value: check_number(value, kind, low, high, "value"))


def _parsed(name: str, check: Callable[[Any], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return check(yaml.safe_load(text))
        except yaml.YAMLError as e:
            raise argparse.ArgumentTypeError(f"{text!r}: {yaml_problem(e)}") from None
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e).split(": ", 1)[-1]) from None

    parse.__name__ = name  # argparse names the type in some messages
    return parse


def _directory(text: str) -> str:
    """An argparse ``type`` for a directory to write into (made if missing): refused at once
    if it, or the nearest of its parents that exists, is a file."""
    path = Path(text)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        where = "" if existing == path else f"{text}: "
        raise argparse.ArgumentTypeError(f"{where}{existing} is a file, not a directory; choose another path")
    return text


def _add_runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=_config_value(TrainingConfig, "threads"),
        default=0,
        help="CPU threads (default: every core)",
    )
    p.add_argument("--device", default="auto", choices=DEVICES)


def _add_search_args(p: argparse.ArgumentParser, exported: bool = False) -> None:
    """The model and search flags; ``exported``: also ``--model DIR``, instead of --checkpoint."""
    where: Any = p.add_mutually_exclusive_group(required=True) if exported else p
    where.add_argument(
        "--checkpoint",
        required=not exported,
        nargs="+",
        help="a checkpoint written by `seq2seq train`; several make an ensemble (search settings from the first)",
    )
    if exported:
        where.add_argument(
            "--model", metavar="DIR", help="instead: an export directory of `seq2seq export`, run without torch"
        )
    _add_search_flags(p)
    _add_runtime_args(p)
    _add_workers_flag(p, "decode batches in N forked processes of one thread each (CPU only)")


def _add_workers_flag(p: argparse.ArgumentParser, text: str) -> None:
    """``--workers N`` of translate and serve: forked decoding processes (seq2seq.translate.forked_pool)."""
    p.add_argument("--workers", type=_number(int, 1), default=1, help=text)


def _add_search_flags(p: argparse.ArgumentParser) -> None:
    """One flag per search setting of :data:`seq2seq.commands.SEARCH_FLAGS`, checked as its
    config key; unset flags keep the checkpoint's setting."""
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


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a bad flag (2, after argparse's message)
        return e.code if isinstance(e.code, int) else 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    debug = getattr(args, "debug", False) or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    try:
        code = COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print(f"seq2seq {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout's reader went away (`| head`): stop quietly, as other tools do
        _silence_stdout()
        return 128 + 13  # as if killed by SIGPIPE
    except Exception as e:
        if debug:
            traceback.print_exc()
        code, message = _failure(e, debug)
        print(f"seq2seq {args.command}: error: {message}", file=sys.stderr)
        return code
    return code or 0


def _failure(error: Exception, debug: bool) -> tuple[int, str]:
    """The exit code and the one-line message for an error that ended a command."""
    if isinstance(error, Seq2SeqError):
        code, message = error.exit_code, str(error)
    elif isinstance(error, UnicodeDecodeError):  # streamed input (stdin or --input) that is not UTF-8
        code, message = 2, f"input is not valid UTF-8 ({error.reason}); convert it, e.g. with iconv"
    elif _out_of_memory(error):
        code, message = 2, OUT_OF_MEMORY
    elif isinstance(error, OSError):  # a file the command could not read or write
        where = f"{error.filename}: " if error.filename else ""
        code, message = 2, f"{where}{error.strerror or error}"
    else:  # a bug: still one line, unless asked for the traceback
        hint = "" if debug else "; run with --debug for the traceback"
        code, message = 1, f"unexpected {type(error).__name__}: {error}{hint}"
    return code, " ".join(message.split("\n"))


OUT_OF_MEMORY = (
    "out of memory: the model or a batch does not fit; make them smaller (model sizes, data.batch_tokens, "
    "--batch-size), use fewer --workers or a device with more memory"
)


def _out_of_memory(error: Exception) -> bool:
    """Whether ``error`` is an allocation that failed (torch's allocators raise RuntimeError)."""
    text = str(error)
    return isinstance(error, MemoryError) or (
        isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
    )


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush does not fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):  # not a file descriptor (a test's capture)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
