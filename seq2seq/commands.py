"""What each ``seq2seq`` subcommand does, given its parsed arguments (:mod:`seq2seq.cli`
parses them). The cheap checks come first: flags, input files, then the checkpoints."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from seq2seq.config import RunConfig, load_config
from seq2seq.errors import ConfigError, DataError

if TYPE_CHECKING:  # torch and the checkpoint module load only when a command needs them
    from seq2seq.api import Translator
    from seq2seq.export.runtime import ExportedTranslator
    from seq2seq.outputs import Translation
    from seq2seq.train.interrupt import Interrupted

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


def _search_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The search flags given on the command line (SEARCH_FLAGS), by setting name."""
    return {name: getattr(args, name) for name in SEARCH_FLAGS if getattr(args, name, None) is not None}


def _open_translator(args: argparse.Namespace, paths: list[str], **fixed: Any) -> Translator:
    """The checkpoints ``paths`` as a :class:`~seq2seq.api.Translator`, its search settings
    the first checkpoint's overridden by the search flags given (and ``fixed``); the checks
    that need no checkpoint run before any is loaded, and errors name the flags."""
    from seq2seq.api import LoadOptions, Translator

    given = _search_flags(args)
    options = LoadOptions(args.device, args.threads, getattr(args, "workers", 1), {**given, **fixed}, flags=True)
    return Translator.open(paths, options)


def _open_exported(args: argparse.Namespace) -> ExportedTranslator:
    """``translate --model DIR``: an export directory of ``seq2seq export`` in the torch-free
    runtime, its search settings overridden by the search flags given; ``--int8``: its int8 graphs."""
    from seq2seq.export.runtime import load_exported

    given = _search_flags(args)
    given["precision"] = "int8" if args.int8 else given.get("precision")
    options = dict(device=args.device, threads=args.threads, workers=args.workers)
    return load_exported(args.model, **options, **given)


def cmd_train(args: argparse.Namespace) -> int:
    """Train; after SIGINT or SIGTERM, say how to resume and return 130 or 143."""
    from seq2seq.train.interrupt import Interrupted
    from seq2seq.train.run import train

    config = load_config(args.config, args.set)
    run_dir = args.run_dir or str(Path("runs") / Path(args.config).stem)
    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun, one voice: rank 0's
    try:
        best = train(config, run_dir, args.resume, args.overwrite, args.allow_data_change)
    except Interrupted as e:
        if main_rank:
            print(f"seq2seq train: {_interrupted(e, args, run_dir)}", file=sys.stderr)
        return e.exit_code
    if main_rank:
        print(best)
    return 0


def _interrupted(e: Interrupted, args: argparse.Namespace, run_dir: str) -> str:
    """What an interrupted training tells its user: what was saved and the command that goes on."""
    last = Path(run_dir) / "last.pt"
    command = ["seq2seq", "train", args.config, "--run-dir", run_dir, *(x for s in args.set for x in ("--set", s))]
    if e.saved_step is not None:
        what = f"at step {e.saved_step}; saved {last}"
    elif last.exists():
        what = f"at once, unsaved; {last} holds the last save"
    else:
        return f"interrupted by {e.name} before the first checkpoint; start it again with: {shlex.join(command)}"
    launcher = " (through torchrun, as before)" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    return f"interrupted by {e.name} {what}; resume with{launcher}: {shlex.join([*command, '--resume'])}"


def cmd_translate(args: argparse.Namespace) -> None:
    from seq2seq.lines import check_writable, check_writable_dir, decoded_lines, open_input

    if args.output:
        check_writable(args.output, "--output")
    if args.attention_dir:
        check_writable_dir(args.attention_dir, "--attention-dir")
    if args.int8 and not args.model:
        raise ConfigError("--int8 runs the int8 graphs of an export directory: it goes with --model DIR")
    with open_input(args.input) as source:
        translator = _open_translator(args, args.checkpoint) if args.checkpoint else _open_exported(args)
        if args.attention_dir and not translator.attends:
            model = args.checkpoint[0] if args.checkpoint else args.model
            raise ConfigError(f"--attention-dir: {model} has a decoder without attention (type context)")
        lines = decoded_lines(source, args.input or "<stdin>")
        _translate(args, translator, lines, chunk_lines=1 if source.isatty() else 10_000)  # a terminal: line by line


def _translate(
    args: argparse.Namespace, translator: Translator | ExportedTranslator, lines: Iterator[str], chunk_lines: int
) -> None:
    n_best = translator.search.n_best
    with atomic_output(args.output) as out:
        outputs = translator.translate_iter(lines, return_attention=bool(args.attention_dir), chunk_lines=chunk_lines)
        for i, nbest in enumerate(outputs):
            if n_best == 1:
                out.write(nbest[0].text + "\n")
            else:  # Moses n-best format
                out.writelines(f"{i} ||| {t.text} ||| {t.score:.4f}\n" for t in nbest)
            out.flush()
            if args.attention_dir and nbest[0].attention is not None:  # None: an empty line
                with atomic_output(str(Path(args.attention_dir) / f"{i:06d}.json")) as f:
                    json.dump(attention_record(i, nbest[0]), f)


def attention_record(line: int, translation: Translation) -> dict[str, Any]:
    """What ``translate --attention-dir`` writes and ``seq2seq plot-attention`` draws:
    source and target pieces (EOS included) and the weights, one row per target piece."""
    assert translation.attention is not None
    weights = [[round(w, 5) for w in row] for row in translation.attention]
    source, target = [*translation.source_tokens, "</s>"], [*translation.tokens, "</s>"]
    return {"line": line, "source": source, "target": target, "weights": weights}


def cmd_evaluate(args: argparse.Namespace) -> None:
    from seq2seq.evaluate import format_scores, score_corpus
    from seq2seq.lines import check_writable, read_lines

    if bool(args.split) == bool(args.src or args.ref) or bool(args.src) != bool(args.ref):
        raise ConfigError("evaluate needs --src and --ref, or --split dev|test")
    if args.output:
        check_writable(args.output, "--output")
    if args.src:  # read before any checkpoint is loaded: a wrong path fails at once
        sources, references = read_lines(args.src), read_lines(args.ref)
        if len(sources) != len(references):
            raise DataError(
                f"{args.src} has {len(sources)} lines but {args.ref} has {len(references)}: "
                "every source line needs exactly one reference"
            )
        if not sources:
            raise DataError(f"{args.src}: no lines to evaluate")
    translator = _open_translator(args, args.checkpoint)
    if args.split:
        sources, references = _config_corpus(translator.config, args.split)
    hypotheses = [nbest[0].text for nbest in translator.translate_iter(sources, n_best=1)]
    if args.output:
        with atomic_output(args.output) as out:
            out.writelines(h + "\n" for h in hypotheses)
    scores = score_corpus(hypotheses, references)
    print(json.dumps(scores) if args.json else format_scores(scores))


def cmd_score(args: argparse.Namespace) -> None:
    from seq2seq.lines import check_writable, decoded_lines, open_input
    from seq2seq.score import score_lines

    if args.output:
        check_writable(args.output, "--output")
    with open_input(args.input) as source:
        # Force-decoding runs the whole model at once: no shortlist, no compiled step loop.
        translator = _open_translator(args, [args.checkpoint], batch_size=args.batch_size, shortlist=0, compile="none")
        name = args.input or "<stdin>"
        with atomic_output(args.output) as out:
            for line in score_lines(translator.score, decoded_lines(source, name), fmt=args.format, name=name):
                out.write(line + "\n")


def _config_corpus(config: RunConfig, split: str) -> tuple[list[str], list[str]]:
    from seq2seq.data.sources import load_corpus

    corpus = config.data.dev if split == "dev" else config.data.test
    if corpus is None:
        raise ConfigError(f"the checkpoint's config has no data.{split}; pass --src and --ref")
    ds = load_corpus(corpus, config.data.src_lang, config.data.tgt_lang)
    return ds["src"], ds["tgt"]


def cmd_average(args: argparse.Namespace) -> None:
    run_dir = Path(args.run_dir) if args.run_dir is not None else None
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


def cmd_serve(args: argparse.Namespace) -> None:
    from seq2seq.serve import require_extra
    from seq2seq.serve.options import API_KEY_VARIABLE, Limits, is_loopback, parse_model_specs

    models = parse_model_specs(args.checkpoint)
    limits = Limits(**{name: getattr(args, name) for name in Limits.__dataclass_fields__})
    api_key = os.environ.get(API_KEY_VARIABLE) or None
    require_extra()
    from seq2seq.api import Translator
    from seq2seq.serve.app import create_app, run_server

    if args.workers > 1:  # checked before any checkpoint loads
        from seq2seq.runtime import pick_device
        from seq2seq.translate import check_workers

        check_workers(args.workers, pick_device(args.device, "--device"), "--workers")
        exported = [path for path in models.values() if Path(path).is_dir()]
        if exported:
            raise ConfigError(
                f"--workers {args.workers}: {exported[0]} is an export directory; serve it with --workers 1"
            )
    translators = {
        model_id: Translator.load(path, device=args.device, threads=args.threads, **_search_flags(args))
        for model_id, path in models.items()
    }
    if not is_loopback(args.host):
        print(
            f"seq2seq serve: listening on {args.host}, beyond this machine"
            + ("" if api_key else f"; anyone who reaches it may use it (set {API_KEY_VARIABLE} to ask for a key)"),
            file=sys.stderr,
        )
    run_server(create_app(translators, limits, api_key, args.workers), args.host, args.port, limits)


def cmd_export(args: argparse.Namespace) -> None:
    from seq2seq.export.onnx import export_model

    info = export_model(args.checkpoint, args.output, int8=args.int8, opset=args.opset)
    files = sorted(graph[kind] for graph in info["graphs"].values() for kind in ("file", "int8") if kind in graph)
    print(f"{args.checkpoint} -> {args.output}: {', '.join(files)}")


COMMANDS = {
    "train": cmd_train,
    "translate": cmd_translate,
    "evaluate": cmd_evaluate,
    "score": cmd_score,
    "average": cmd_average,
    "plot-attention": cmd_plot_attention,
    "serve": cmd_serve,
    "export": cmd_export,
}
