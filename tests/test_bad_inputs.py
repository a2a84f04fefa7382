"""The catalogue of bad inputs (issue 20), as a table run through the real command line.

Each row is a command line (with the bad file it needs written into ``tmp_path`` first) that a
careless or hostile user could type, the exit code it must end with and a fragment of the one
line it must print on stderr. Every row is run in process through :func:`seq2seq.cli.main` and
checked for: that exit code, that fragment, no traceback anywhere, and no output file (or
checkpoint, or temporary file) left where the command was asked to write one. A few rows run
again through ``python -m seq2seq`` to show that no traceback reaches a terminal either.

Two untrained tiny checkpoints, written once for the module, stand in for trained ones: every
row fails before a translation would mean anything.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import ROOT, TINY, load_script, write_toy_corpus, write_untrained_checkpoint

from seq2seq.checkpoint import read_checkpoint, write_checkpoint
from seq2seq.cli import main

MISSING = "/nonexistent/model.pt"  # never there: the row's check must come before any checkpoint is read


@dataclass(frozen=True)
class Env:
    """What the rows' command lines refer to, by the names of ``str.format``."""

    ckpt: Path  # an attention (bahdanau) model; its config names the toy corpus as dev and test set
    ctx: Path  # a context decoder (no attention), other SentencePiece models, no test set
    corpus: Path  # the toy corpus (train.src, train.tgt, dev.src, dev.tgt)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    corpus = write_toy_corpus(tmp_path_factory.mktemp("corpus"))
    models = tmp_path_factory.mktemp("models")
    ckpt = write_untrained_checkpoint(models / "model.pt", corpus, "bahdanau", sides=("src",))
    ctx = write_untrained_checkpoint(models / "context.pt", corpus, "context", sides=("tgt",), test=False)
    return Env(ckpt, ctx, corpus)


# --- setups: each writes what its row needs into tmp ------------------------------------------

Setup = Callable[[Path, Env, pytest.MonkeyPatch], object]  # what it returns is ignored


def files(**contents: str | bytes) -> Setup:
    """Write ``name=content`` files (``__`` in a name stands for ``.``)."""

    def setup(tmp: Path, env: Env, mp: pytest.MonkeyPatch) -> None:
        for name, content in contents.items():
            path = tmp / name.replace("__", ".")
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")

    return setup


def both(*setups: Setup) -> Setup:
    def setup(tmp: Path, env: Env, mp: pytest.MonkeyPatch) -> None:
        for s in setups:
            s(tmp, env, mp)

    return setup


def needs(module: str) -> Setup:
    def setup(tmp: Path, env: Env, mp: pytest.MonkeyPatch) -> None:
        pytest.importorskip(module)

    return setup


def gz_corpus(damage: str) -> Setup:
    """``tmp/bad.{src,tgt}``: the source side gzip-compressed, then damaged."""

    def setup(tmp: Path, env: Env, mp: pytest.MonkeyPatch) -> None:
        data = gzip.compress((env.corpus / "train.src").read_bytes())
        if damage == "truncated":
            data = data[: len(data) // 2]
        elif damage == "crc":
            data = data[:-8] + bytes([data[-8] ^ 0xFF]) + data[-7:]  # the CRC-32 of the trailer
        elif damage == "corrupt":
            data = data[:20] + bytes(len(data) - 40) + data[-20:]
        (tmp / "bad.src.gz").write_bytes(data)
        (tmp / "bad.tgt").write_bytes((env.corpus / "train.tgt").read_bytes())

    return setup


def edited_checkpoint(edit: Callable[[dict[str, Any]], Any]) -> Setup:
    """``tmp/bad.pt``: the attention checkpoint's payload, edited."""

    def setup(tmp: Path, env: Env, mp: pytest.MonkeyPatch) -> None:
        payload = torch.load(env.ckpt, weights_only=True)
        edit(payload)
        torch.save(payload, tmp / "bad.pt")

    return setup


def _first_weight(payload: dict[str, Any]) -> str:
    return sorted(payload["model"])[0]


class _Malicious:
    """Pickled as a call of ``os.mkdir(tmp/pwned)``: loading it must never make the directory."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.target),))


def malicious_checkpoint(tmp: Path, env: Env, mp: pytest.MonkeyPatch) -> None:
    torch.save({"format": 1, "config": {}, "model": _Malicious(tmp / "pwned")}, tmp / "bad.pt")


def full_disk(tmp: Path, env: Env, mp: pytest.MonkeyPatch) -> None:
    """Every atomic write goes to /dev/full: its writes fail with ENOSPC, as on a full disk."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")

    def mkstemp(**_: Any) -> tuple[int, str]:
        return os.open("/dev/full", os.O_WRONLY), str(tmp / ".never-created.tmp")

    mp.setattr(tempfile, "mkstemp", mkstemp)


HELD: list[Any] = []  # run-directory locks a row holds while its command runs


@pytest.fixture(autouse=True)
def _locks_released() -> Any:
    yield
    while HELD:
        HELD.pop().release()


def locked_run_dir(tmp: Path, env: Env, mp: pytest.MonkeyPatch) -> None:
    """``tmp/run`` whose lock another training holds (this process, through another open file)."""
    from seq2seq.train.lock import RunLock

    (tmp / "run").mkdir()
    lock = RunLock(tmp / "run")
    lock.acquire()
    HELD.append(lock)


def read_only(tmp: Path, env: Env, mp: pytest.MonkeyPatch) -> None:
    """Creating any file fails as on a read-only file system (root ignores permission bits)."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    mp.setattr(tempfile, "mkstemp", refuse)
    mp.setattr(tempfile, "TemporaryFile", refuse)


def run_dir_with(*names: str) -> Setup:
    return files(**{f"run/{name}": "x" for name in names})


def attention_json(data: Any) -> Setup:
    return files(att__json=json.dumps(data))


GOOD_ATTENTION = {"line": 0, "source": ["a", "</s>"], "target": ["b", "</s>"], "weights": [[0.5, 0.5], [0.5, 0.5]]}
NOT_UTF8 = b"ein \xff\xfe zwei\n"


# --- the table --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    argv: str  # formatted with env's fields, tmp, tiny, missing and data; split as a shell would
    code: int
    fragment: str  # in stderr
    setup: Setup | None = None
    outputs: tuple[str, ...] = field(default=())  # paths (formatted as argv) that must not exist afterwards


TRANSLATE = "translate --checkpoint {ckpt} --input {corpus}/dev.src"
DATA = "--set data.train.path={corpus}/train --set data.dev.path={corpus}/dev"
TRAIN = "train {tiny} --run-dir {tmp}/run " + DATA
BAD_TRAIN = "train {tiny} --run-dir {tmp}/run --set data.train.path={tmp}/bad --set data.dev.path={corpus}/dev"
NO_RUN = ("{tmp}/run/last.pt", "{tmp}/run/best.pt")

FLAGS = [
    Case(
        "beam-size 0",
        "translate --checkpoint {missing} --beam-size 0",
        2,
        "argument --beam-size: 0 is outside [1, inf]",
    ),
    Case("beam-size text", "translate --checkpoint {missing} --beam-size two", 2, "expected an integer, got 'two'"),
    Case("beam-size float", "translate --checkpoint {missing} --beam-size 1.5", 2, "expected an integer, got 1.5"),
    Case("beam-size nan", "translate --checkpoint {missing} --beam-size .nan", 2, "expected an integer"),
    Case("beam-size bad yaml", "translate --checkpoint {missing} --beam-size '[1'", 2, "argument --beam-size: '[1'"),
    Case(
        "beam-size python tag",
        "translate --checkpoint {missing} --beam-size '!!python/object/apply:os.getcwd []'",
        2,
        "is not allowed",
    ),
    Case("n-best 0", "translate --checkpoint {missing} --n-best 0", 2, "argument --n-best: 0 is outside [1, inf]"),
    Case(
        "n-best above beam",
        "translate --checkpoint {missing} --beam-size 2 --n-best 3",
        2,
        "search.n_best: 3 must be in 1..search.beam_size (2)",
    ),
    Case("n-best above checkpoint's beam", "translate --checkpoint {ckpt} --n-best 3", 2, "search.n_best: 3"),
    Case("batch-size 0", "translate --checkpoint {missing} --batch-size 0", 2, "argument --batch-size: 0 is outside"),
    Case(
        "batch-size -5", "translate --checkpoint {missing} --batch-size -5", 2, "argument --batch-size: -5 is outside"
    ),
    Case(
        "threads -1", "translate --checkpoint {missing} --threads -1", 2, "argument --threads: -1 is outside [0, inf]"
    ),
    Case(
        "threads text", "translate --checkpoint {missing} --threads many", 2, "argument --threads: expected an integer"
    ),
    Case("workers 0", "translate --checkpoint {missing} --workers 0", 2, "argument --workers: 0 is outside [1, inf]"),
    Case(
        "workers -1", "translate --checkpoint {missing} --workers -1", 2, "argument --workers: -1 is outside [1, inf]"
    ),
    Case("workers text", "translate --checkpoint {missing} --workers x", 2, "argument --workers: expected an integer"),
    Case(
        "shortlist 101", "translate --checkpoint {missing} --shortlist 101", 2, "argument --shortlist: 101 is outside"
    ),
    Case(
        "shortlist-frequent -1", "translate --checkpoint {missing} --shortlist-frequent -1", 2, "is outside [0, 2000]"
    ),
    Case("precision fp64", "translate --checkpoint {missing} --precision fp64", 2, "argument --precision"),
    Case("compile fast", "translate --checkpoint {missing} --compile fast", 2, "argument --compile"),
    Case("kernels maybe", "translate --checkpoint {missing} --kernels maybe", 2, "expected true or false"),
    Case("device tpu", "translate --checkpoint {missing} --device tpu", 2, "argument --device: invalid choice: 'tpu'"),
    Case("unknown flag", "translate --checkpoint {missing} --beem 3", 2, "unrecognized arguments: --beem"),
    Case("no checkpoint", "score", 2, "the following arguments are required: --checkpoint"),
    Case("no command", "", 2, "the following arguments are required: command"),
    Case("unknown command", "translat", 2, "invalid choice: 'translat'"),
    Case(
        "score batch-size -5", "score --checkpoint {missing} --batch-size -5", 2, "argument --batch-size: -5 is outside"
    ),
    Case("score batch-size 0", "score --checkpoint {missing} --batch-size 0", 2, "argument --batch-size: 0 is outside"),
    Case("score threads -1", "score --checkpoint {missing} --threads -1", 2, "argument --threads: -1 is outside"),
    Case("score format csv", "score --checkpoint {missing} --format csv", 2, "argument --format: invalid choice"),
    Case("evaluate threads -1", "evaluate --checkpoint {missing} --threads -1", 2, "argument --threads: -1"),
    Case("evaluate nothing to score", "evaluate --checkpoint {missing}", 2, "evaluate needs --src and --ref"),
    Case("evaluate src alone", "evaluate --checkpoint {missing} --src {corpus}/dev.src", 2, "needs --src and --ref"),
    Case(
        "evaluate split train", "evaluate --checkpoint {missing} --split train", 2, "argument --split: invalid choice"
    ),
    Case(
        "average last 0", "average --run-dir {tmp} --last 0 --output {tmp}/avg.pt", 2, "argument --last: 0 is outside"
    ),
    Case("average last -1", "average --run-dir {tmp} --last -1 --output {tmp}/avg.pt", 2, "argument --last: -1"),
    Case("average last text", "average --run-dir {tmp} --last x --output {tmp}/avg.pt", 2, "expected an integer"),
    Case("average nothing", "average --output {tmp}/avg.pt", 2, "give CKPT files, or --run-dir DIR --last N"),
    Case("average last alone", "average {ckpt} --last 2 --output {tmp}/avg.pt", 2, "--last goes with --run-dir"),
    Case(
        "average run-dir a file",
        "average --run-dir {ckpt} --last 2 --output {tmp}/avg.pt",
        2,
        "is a file, not a directory",
        outputs=("{tmp}/avg.pt",),
    ),
    Case(
        "average too few",
        "average --run-dir {tmp} --last 2 --output {tmp}/avg.pt",
        2,
        "found 0",
        outputs=("{tmp}/avg.pt",),
    ),
    Case("serve port", "serve --checkpoint {missing} --port 70000", 2, "argument --port: 70000 is outside [0, 65535]"),
    Case("serve port text", "serve --checkpoint {missing} --port http", 2, "argument --port: expected an integer"),
    Case("serve max-sentences 0", "serve --checkpoint {missing} --max-sentences 0", 2, "--max-sentences: 0 is outside"),
    Case("serve timeout nan", "serve --checkpoint {missing} --timeout .nan", 2, "--timeout: expected a finite number"),
    Case("serve timeout -1", "serve --checkpoint {missing} --timeout -1", 2, "--timeout: -1.0 is outside [0.0, inf]"),
    Case("export opset", "export {missing} --output {tmp}/exp --opset 3", 2, "argument --opset: 3 is outside [14, 21]"),
    Case("export output a file", "export {ckpt} --output {ckpt}", 2, "is a file, not a directory"),
    Case("dpi 0", "plot-attention {tmp}/att.json --output {tmp}/a.png --dpi 0", 2, "argument --dpi: 0 is outside"),
    Case("dpi -3", "plot-attention {tmp}/att.json --output {tmp}/a.png --dpi -3", 2, "argument --dpi: -3 is outside"),
    Case("dpi huge", "plot-attention {tmp}/att.json --output {tmp}/a.png --dpi 100000", 2, "is outside [1, 2400]"),
    Case("dpi text", "plot-attention {tmp}/att.json --output {tmp}/a.png --dpi high", 2, "expected an integer"),
]

CONFIGS = [
    Case("config missing", "train {tmp}/nope.yaml", 2, "nope.yaml: cannot read config"),
    Case("config not yaml", "train {tmp}/c.yaml", 2, "c.yaml: not valid YAML: line 1", files(c__yaml="a: b: c\n")),
    Case(
        "config python tag",
        "train {tmp}/c.yaml",
        2,
        "python/object/apply:os.system' is not allowed",
        files(c__yaml='training:\n  seed: !!python/object/apply:os.system ["true"]\n'),
    ),
    Case("config a directory", "train {tmp}", 2, "cannot read config: Is a directory"),
    Case(
        "config not utf-8",
        "train {tmp}/c.yaml",
        2,
        "c.yaml: not UTF-8 text (byte 18)",
        files(c__yaml=b"training:\n  seed: \xff\n"),
    ),
    Case("config a list", "train {tmp}/c.yaml", 2, "expected a mapping of sections", files(c__yaml="- 1\n- 2\n")),
    Case("unknown section", "train {tmp}/c.yaml", 2, "trainig: unknown key", files(c__yaml="trainig: {}\n")),
    Case("unknown key", "train {tiny} --set model.encoder.hiden_size=8", 2, "model.encoder.hiden_size: unknown key"),
    Case("lr nan", "train {tiny} --set training.learning_rate=.nan", 2, "training.learning_rate: expected a finite"),
    Case("lr inf", "train {tiny} --set training.learning_rate=.inf", 2, "training.learning_rate: expected a finite"),
    Case("lr nan text", "train {tiny} --set training.learning_rate=nan", 2, "expected a finite number, got nan"),
    Case(
        "lr nan in file",
        "train {tmp}/c.yaml",
        2,
        "training.learning_rate: expected a finite number",
        files(c__yaml="training:\n  learning_rate: .nan\n"),
    ),
    Case("lr negative", "train {tiny} --set training.learning_rate=-1", 2, "-1.0 is outside [0.0, inf]"),
    Case("lr text", "train {tiny} --set training.learning_rate=fast", 2, "expected a number, got 'fast'"),
    Case("dropout 1.5", "train {tiny} --set model.encoder.dropout=1.5", 2, "1.5 is outside [0.0, 1.0]"),
    Case(
        "clip inf", "train {tiny} --set training.clip_grad_norm=-.inf", 2, "training.clip_grad_norm: expected a finite"
    ),
    Case("cell unknown", "train {tiny} --set model.encoder.cell=transformer", 2, "'transformer' is not one of"),
    Case("hidden 0", "train {tiny} --set model.encoder.hidden_size=0", 2, "model.encoder.hidden_size: 0 is outside"),
    Case("hidden float", "train {tiny} --set model.encoder.hidden_size=1.5", 2, "expected an integer, got 1.5"),
    Case("bool text", "train {tiny} --set model.encoder.bidirectional=maybe", 2, "expected true or false"),
    Case("seed -1", "train {tiny} --set training.seed=-1", 2, "training.seed: -1 is outside [0, 4294967295]"),
    Case("betas 1", "train {tiny} --set 'training.betas=[1, 0.9]'", 2, "training.betas[0]: 1.0 is outside [0, 1)"),
    Case("betas one", "train {tiny} --set 'training.betas=[0.9]'", 2, "training.betas: expected a list of 2 numbers"),
    Case("betas nan", "train {tiny} --set 'training.betas=[0.9, .nan]'", 2, "training.betas[1]: expected a finite"),
    Case("set no equals", "train {tiny} --set training.seed", 2, "expected KEY=VALUE"),
    Case(
        "set bad yaml", "train {tiny} --set 'training.learning_rate=[1'", 2, "--set training.learning_rate=[1: line 1"
    ),
    Case(
        "set python tag",
        "train {tiny} --set 'training.seed=!!python/object/apply:os.system [\"true\"]'",
        2,
        "tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed",
    ),
    Case("set section to value", "train {tiny} --set model=3", 2, "model: expected a mapping of keys, got 3"),
    Case("set into value", "train {tiny} --set training.threads.x=1", 2, "training.threads: is a value, not a section"),
    Case(
        "tied sizes",
        "train {tiny} --set model.decoder.tie_embeddings=true --set model.decoder.output_size=8",
        2,
        "model.decoder.tie_embeddings: true needs model.decoder.output_size",
    ),
    Case(
        "bridge last",
        "train {tiny} --set model.bridge=last --set model.decoder.hidden_size=8",
        2,
        "model.bridge: last copies the encoder's final",
    ),
    Case(
        "compile without kernels",
        "train {tiny} --set training.compile=default --set training.kernels=false",
        2,
        "training.compile: default needs training.kernels: true",
    ),
    Case("config n-best", "train {tiny} --set search.n_best=3", 2, "search.n_best: 3 must be in 1..search.beam_size"),
    Case("max source length -1", "train {tiny} --set search.max_source_length=-1", 2, "search.max_source_length: -1"),
    Case(
        "long source drop", "train {tiny} --set search.long_source=drop", 2, "search.long_source: 'drop' is not one of"
    ),
    Case("corpus format", "train {tiny} --set data.train.format=xml", 2, "data.train.format: 'xml' is not one of"),
    Case("vocab 3", "train {tiny} --set data.subwords.vocab_size=3", 2, "data.subwords.vocab_size: 3 is outside"),
    Case("run-dir a file", "train {tiny} --run-dir {ckpt}", 2, "argument --run-dir: {ckpt} is a file, not a directory"),
    Case(
        "run-dir under a file",
        "train {tiny} --run-dir {ckpt}/run",
        2,
        "argument --run-dir: {ckpt}/run: {ckpt} is a file, not a directory",
    ),
    Case(
        "model too large for memory",
        TRAIN + " --set model.encoder.hidden_size=100000000",
        2,
        "out of memory: the model or a batch does not fit",
        outputs=NO_RUN,
    ),
    Case(
        "resume and overwrite",
        TRAIN + " --resume --overwrite",
        2,
        "--resume continues the run, --overwrite deletes it",
        outputs=NO_RUN,
    ),
    Case(
        "run directory in use",
        TRAIN,
        2,
        f"another training (process {os.getpid()} on",
        locked_run_dir,
        outputs=NO_RUN,
    ),
    Case("resume nothing", TRAIN + " --resume", 2, "start without --resume", outputs=NO_RUN),
    Case("run-dir not empty", TRAIN, 2, "is not empty", run_dir_with("notes.txt"), outputs=NO_RUN),
    Case("overwrite no run", TRAIN + " --overwrite", 2, "holds no run", run_dir_with("notes.txt"), outputs=NO_RUN),
]

CORPORA = [
    Case("corpus missing", BAD_TRAIN, 2, "no src file for corpus", outputs=NO_RUN),
    Case(
        "corpus sides differ",
        BAD_TRAIN,
        2,
        "bad.src has 3 lines but",
        files(bad__src="a\nb\nc\n", bad__tgt="a\nb\n"),
        outputs=NO_RUN,
    ),
    Case("corpus empty", BAD_TRAIN, 2, "are empty", files(bad__src="", bad__tgt=""), outputs=NO_RUN),
    Case(
        "corpus all lines empty",
        BAD_TRAIN,
        2,
        "every sentence is empty",
        files(bad__src="\n\n\n", bad__tgt="\n\n\n"),
        outputs=NO_RUN,
    ),
    Case(
        "corpus not utf-8",
        BAD_TRAIN,
        2,
        "bad.src:2: not valid UTF-8",
        files(bad__src=b"ok\n" + NOT_UTF8, bad__tgt="a\nb\n"),
        outputs=NO_RUN,
    ),
    Case("gz truncated", BAD_TRAIN, 2, "bad.src.gz:", gz_corpus("truncated"), outputs=NO_RUN),
    Case("gz truncated says so", BAD_TRAIN, 2, "it ends early (truncated)", gz_corpus("truncated"), outputs=NO_RUN),
    Case("gz crc", BAD_TRAIN, 2, "CRC check failed", gz_corpus("crc"), outputs=NO_RUN),
    Case("gz corrupt", BAD_TRAIN, 2, "cannot decompress the gzip file", gz_corpus("corrupt"), outputs=NO_RUN),
    Case(
        "tsv no column",
        BAD_TRAIN + " --set data.train.format=tsv --set data.train.path={tmp}/bad.tsv",
        2,
        "bad.tsv:1: no column 'src' in the header",
        files(bad__tsv="de\ten\nein\tone\n"),
        outputs=NO_RUN,
    ),
    Case(
        "tsv fields",
        BAD_TRAIN + " --set data.train.format=tsv --set data.train.path={tmp}/bad.tsv",
        2,
        "bad.tsv:3: 1 tab-separated fields",
        files(bad__tsv="src\ttgt\nein\tone\nzwei\n"),
        outputs=NO_RUN,
    ),
    Case(
        "jsonl not json",
        BAD_TRAIN + " --set data.train.format=jsonl --set data.train.path={tmp}/bad.jsonl",
        2,
        "bad.jsonl:2: not valid JSON",
        files(bad__jsonl='{"src": "a", "tgt": "b"}\n{"src": \n'),
        outputs=NO_RUN,
    ),
    Case(
        "jsonl not object",
        BAD_TRAIN + " --set data.train.format=jsonl --set data.train.path={tmp}/bad.jsonl",
        2,
        "bad.jsonl:1: expected a JSON object, got list",
        files(bad__jsonl="[1, 2]\n"),
        outputs=NO_RUN,
    ),
    Case(
        "jsonl no field",
        BAD_TRAIN + " --set data.train.format=jsonl --set data.train.path={tmp}/bad.jsonl",
        2,
        "bad.jsonl:1: no field 'tgt'",
        files(bad__jsonl='{"src": "a"}\n'),
        outputs=NO_RUN,
    ),
    Case(
        "hf dataset missing",
        BAD_TRAIN + " --set data.train.format=hf --set data.train.path={tmp}/nope",
        2,
        "cannot load Hugging Face dataset split 'train'",
        outputs=NO_RUN,
    ),
    Case(
        "dev corpus missing",
        TRAIN + " --set data.dev.path={tmp}/nope",
        2,
        "no src file for corpus",
        outputs=NO_RUN,
    ),
    Case(
        "every pair too long",
        TRAIN + " --set data.max_length=1",
        2,
        "no sentence pairs left",
        outputs=NO_RUN,
    ),
]

CHECKPOINTS = [
    Case("checkpoint missing", TRANSLATE.replace("{ckpt}", "{tmp}/nope.pt"), 2, "nope.pt: no such checkpoint"),
    Case("checkpoint a directory", TRANSLATE.replace("{ckpt}", "{tmp}"), 2, "is a directory, not a checkpoint"),
    Case(
        "checkpoint truncated",
        TRANSLATE.replace("{ckpt}", "{tmp}/bad.pt"),
        2,
        "bad.pt: not a readable seq2seq checkpoint",
        lambda tmp, env, mp: (tmp / "bad.pt").write_bytes(env.ckpt.read_bytes()[:5000]),
    ),
    Case(
        "checkpoint text",
        TRANSLATE.replace("{ckpt}", "{tmp}/bad.pt"),
        2,
        "not a readable seq2seq checkpoint",
        files(bad__pt="hello\n"),
    ),
    Case(
        "checkpoint other format",
        TRANSLATE.replace("{ckpt}", "{tmp}/bad.pt"),
        2,
        "not a seq2seq checkpoint of format 1",
        lambda tmp, env, mp: torch.save({"weights": torch.zeros(2)}, tmp / "bad.pt"),
    ),
    Case(
        "checkpoint malicious pickle",
        TRANSLATE.replace("{ckpt}", "{tmp}/bad.pt"),
        2,
        "not a readable seq2seq checkpoint",
        malicious_checkpoint,
        outputs=("{tmp}/pwned",),
    ),
    Case(
        "weights missing",
        TRANSLATE.replace("{ckpt}", "{tmp}/bad.pt"),
        2,
        "its weights do not fit the model of its config (missing ",
        edited_checkpoint(lambda p: p["model"].pop(_first_weight(p))),
    ),
    Case(
        "weights unexpected",
        TRANSLATE.replace("{ckpt}", "{tmp}/bad.pt"),
        2,
        "(unexpected extra.weight)",
        edited_checkpoint(lambda p: p["model"].update({"extra.weight": torch.zeros(1)})),
    ),
    Case(
        "weights shape",
        TRANSLATE.replace("{ckpt}", "{tmp}/bad.pt"),
        2,
        ", the config needs (",
        edited_checkpoint(lambda p: p["model"].update({_first_weight(p): torch.zeros(3, 1)})),
    ),
    Case(
        "weights config changed",
        TRANSLATE.replace("{ckpt}", "{tmp}/bad.pt"),
        2,
        "its weights do not fit the model of its config",
        edited_checkpoint(lambda p: p["config"]["model"]["encoder"].update(hidden_size=12)),
    ),
    Case(
        "weights not tensors",
        TRANSLATE.replace("{ckpt}", "{tmp}/bad.pt"),
        2,
        "its weights are missing or not tensors",
        edited_checkpoint(lambda p: p.update(model=[1, 2])),
    ),
    Case(
        "sentencepiece corrupt",
        TRANSLATE.replace("{ckpt}", "{tmp}/bad.pt"),
        2,
        "its src SentencePiece model is corrupt",
        edited_checkpoint(lambda p: p["vocabs"].update(src=p["vocabs"]["src"][:1000])),
    ),
    Case(
        "sentencepiece missing",
        TRANSLATE.replace("{ckpt}", "{tmp}/bad.pt"),
        2,
        "its tgt SentencePiece model is missing",
        edited_checkpoint(lambda p: p["vocabs"].pop("tgt")),
    ),
    Case(
        "sentencepiece no vocabs",
        TRANSLATE.replace("{ckpt}", "{tmp}/bad.pt"),
        2,
        "its src SentencePiece model is missing",
        edited_checkpoint(lambda p: p.pop("vocabs")),
    ),
    Case(
        "checkpoint config invalid",
        TRANSLATE.replace("{ckpt}", "{tmp}/bad.pt"),
        2,
        "a damaged seq2seq checkpoint (ConfigError: model.encoder.hidden_size: -1 is outside",
        edited_checkpoint(lambda p: p["config"]["model"]["encoder"].update(hidden_size=-1)),
    ),
    Case(
        "ensemble vocabularies",
        "translate --checkpoint {ckpt} {ctx} --input {corpus}/dev.src",
        2,
        "has another src vocabulary than",
    ),
    Case("average other models", "average {ckpt} {ctx} --output {tmp}/avg.pt", 2, "configs differ at model.decoder"),
    Case("no shortlist table", TRANSLATE + " --shortlist 3", 2, "has no shortlist table"),
    Case(
        "attention from a context decoder",
        "translate --checkpoint {ctx} --input {corpus}/dev.src --attention-dir {tmp}/att",
        2,
        "decoder without attention",
    ),
]

TEXT_INPUTS = [
    Case("input missing", "translate --checkpoint {ckpt} --input {tmp}/nope.txt", 2, "nope.txt: cannot read"),
    Case("input a directory", "translate --checkpoint {ckpt} --input {tmp}", 2, "cannot read"),
    Case(
        "input not utf-8",
        "translate --checkpoint {ckpt} --input {tmp}/in.txt --output {tmp}/out.txt",
        2,
        "not valid UTF-8",
        files(in__txt=NOT_UTF8),
        outputs=("{tmp}/out.txt",),
    ),
    Case(
        "output dir missing",
        TRANSLATE + " --output {tmp}/no/out.txt",
        2,
        "does not exist",
        outputs=("{tmp}/no/out.txt",),
    ),
    Case("output a directory", TRANSLATE + " --output {tmp}", 2, "is a directory"),
    Case(
        "output under a file",
        TRANSLATE + " --output {ckpt}/out.txt",
        2,
        "is not a directory",
        outputs=("{ckpt}/out.txt",),
    ),
    Case(
        "output disk full",
        TRANSLATE + " --output {tmp}/out.txt",
        2,
        "out.txt: cannot write: the disk is full",
        full_disk,
        outputs=("{tmp}/out.txt",),
    ),
    Case(
        "output read-only",
        TRANSLATE + " --output {tmp}/out.txt",
        2,
        "out.txt: cannot write: the file system is read-only",
        read_only,
        outputs=("{tmp}/out.txt",),
    ),
    Case(
        "average output read-only",
        "average {ckpt} {ckpt} --output {tmp}/avg.pt",
        2,
        "avg.pt: cannot write: the file system is read-only",
        read_only,
        outputs=("{tmp}/avg.pt",),
    ),
    Case("attention-dir a file", TRANSLATE + " --attention-dir {ckpt}", 2, "is a file, not a directory"),
    Case(
        "evaluate empty files",
        "evaluate --checkpoint {ckpt} --src {tmp}/e.src --ref {tmp}/e.ref --output {tmp}/out.txt",
        2,
        "no lines to evaluate",
        files(e__src="", e__ref=""),
        outputs=("{tmp}/out.txt",),
    ),
    Case(
        "evaluate line counts",
        "evaluate --checkpoint {ckpt} --src {corpus}/dev.src --ref {corpus}/train.tgt",
        2,
        "every source line needs exactly one reference",
    ),
    Case(
        "evaluate src missing",
        "evaluate --checkpoint {ckpt} --src {tmp}/nope.src --ref {corpus}/dev.tgt",
        2,
        "nope.src: cannot read",
    ),
    Case(
        "evaluate ref not utf-8",
        "evaluate --checkpoint {ckpt} --src {tmp}/in.txt --ref {tmp}/ref.txt",
        2,
        "ref.txt",
        files(in__txt="a\nb\n", ref__txt=NOT_UTF8 + b"x\n"),
    ),
    Case(
        "evaluate output dir missing",
        "evaluate --checkpoint {ckpt} --src {corpus}/dev.src --ref {corpus}/dev.tgt --output {tmp}/no/out.txt",
        2,
        "does not exist",
        outputs=("{tmp}/no/out.txt",),
    ),
    Case("evaluate split missing", "evaluate --checkpoint {ctx} --split test", 2, "has no data.test"),
    Case(
        "score no tab",
        "score --checkpoint {ckpt} --input {tmp}/pairs.tsv --output {tmp}/out.txt",
        2,
        "pairs.tsv:2: expected 'source<TAB>target', found no tab",
        files(pairs__tsv="ein\tone\nzwei two\n"),
        outputs=("{tmp}/out.txt",),
    ),
    Case(
        "score moses",
        "score --checkpoint {ckpt} --input {tmp}/pairs.txt --format moses --output {tmp}/out.txt",
        2,
        "found no ' ||| '",
        files(pairs__txt="ein ||| one ||| 0.5\nzwei two\n"),
        outputs=("{tmp}/out.txt",),
    ),
    Case("score input missing", "score --checkpoint {ckpt} --input {tmp}/nope.tsv", 2, "nope.tsv: cannot read"),
    Case(
        "score not utf-8",
        "score --checkpoint {ckpt} --input {tmp}/pairs.tsv --output {tmp}/out.txt",
        2,
        "not valid UTF-8",
        files(pairs__tsv=b"a\tb\n" + NOT_UTF8.replace(b" ", b"\t", 1)),
        outputs=("{tmp}/out.txt",),
    ),
    Case(
        "score output dir missing",
        "score --checkpoint {ckpt} --input {tmp}/pairs.tsv --output {tmp}/no/out.txt",
        2,
        "does not exist",
        files(pairs__tsv="ein\tone\n"),
        outputs=("{tmp}/no/out.txt",),
    ),
    Case(
        "average disk full",
        "average {ckpt} {ckpt} --output {tmp}/avg.pt",
        2,
        "avg.pt: cannot write: the disk is full",
        full_disk,
        outputs=("{tmp}/avg.pt",),
    ),
    Case(
        "source too long, refused",
        "translate --checkpoint {tmp}/bad.pt --input {corpus}/dev.src --output {tmp}/out.txt",
        2,
        "more than search.max_source_length (2)",
        edited_checkpoint(lambda p: p["config"]["search"].update(max_source_length=2, long_source="refuse")),
        outputs=("{tmp}/out.txt",),
    ),
    Case(
        "plot output under a file",
        "plot-attention {tmp}/att.json --output {ckpt}/a.png",
        2,
        "a.png: cannot write: a part of its directory is a file",
        both(needs("matplotlib"), attention_json(GOOD_ATTENTION)),
    ),
    Case(
        "plot output a directory",
        "plot-attention {tmp}/att.json --output {tmp}",
        2,
        "cannot write: it is a directory: give a file name",
        both(needs("matplotlib"), attention_json(GOOD_ATTENTION)),
    ),
    Case(
        "average output under a file",
        "average {ckpt} {ckpt} --output {ckpt}/avg.pt",
        2,
        "avg.pt: cannot write: a part of its directory is a file",
    ),
    Case("plot json missing", "plot-attention {tmp}/att.json --output {tmp}/a.png", 2, "att.json: cannot read"),
    Case(
        "plot json invalid",
        "plot-attention {tmp}/att.json --output {tmp}/a.png",
        2,
        "att.json: not valid JSON",
        files(att__json="{"),
        outputs=("{tmp}/a.png",),
    ),
    Case(
        "plot json shape",
        "plot-attention {tmp}/att.json --output {tmp}/a.png",
        2,
        "'weights' must have one row per target piece (2), got 1",
        attention_json({**GOOD_ATTENTION, "weights": [[1.0, 0.0]]}),
        outputs=("{tmp}/a.png",),
    ),
    Case(
        "plot json weight",
        "plot-attention {tmp}/att.json --output {tmp}/a.png",
        2,
        "expected numbers in [0, 1]",
        attention_json({**GOOD_ATTENTION, "weights": [[1.0, 7.0], [0.5, 0.5]]}),
        outputs=("{tmp}/a.png",),
    ),
]

CASES = FLAGS + CONFIGS + CORPORA + CHECKPOINTS + TEXT_INPUTS


def _format(text: str, env: Env, tmp: Path) -> str:
    return text.format(ckpt=env.ckpt, ctx=env.ctx, corpus=env.corpus, tmp=tmp, tiny=TINY, missing=MISSING, data=DATA)


def test_the_catalogue_is_large_enough() -> None:
    assert len(CASES) >= 80
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(
    case: Case, env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SEQ2SEQ_DEBUG", raising=False)
    if case.setup is not None:
        case.setup(tmp_path, env, monkeypatch)
    before = set(tmp_path.rglob("*"))
    argv = shlex.split(_format(case.argv, env, tmp_path))
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == case.code, err
    last = err.strip().splitlines()[-1]  # before it: argparse's usage, progress bars and log records
    assert _format(case.fragment, env, tmp_path) in last and ": error: " in last, err
    assert "Traceback" not in out + err
    for output in case.outputs:
        assert not Path(_format(output, env, tmp_path)).exists(), output
    left = {p for p in set(tmp_path.rglob("*")) - before if p.name.endswith(".tmp") or p.suffix in (".pt", ".png")}
    assert not left, left  # no temporary file, no checkpoint, no image


# --- through a real process: nothing reaches the terminal but the message ---------------------

SUBPROCESS = ["threads -1", "checkpoint truncated", "gz crc"]


@pytest.mark.parametrize("case_id", SUBPROCESS)
def test_no_traceback_reaches_the_terminal(case_id: str, env: Env, tmp_path: Path) -> None:
    (case,) = [c for c in CASES if c.id == case_id]
    if case.setup is not None:
        case.setup(tmp_path, env, pytest.MonkeyPatch())
    argv = shlex.split(_format(case.argv, env, tmp_path))
    environment = {k: v for k, v in os.environ.items() if k != "SEQ2SEQ_DEBUG"}
    result = subprocess.run(
        [sys.executable, "-m", "seq2seq", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment,
        timeout=120,
    )
    assert result.returncode == case.code, result.stderr
    assert _format(case.fragment, env, tmp_path) in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


# --- --debug shows what the one line hides; a bug still ends in one line ----------------------


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SEQ2SEQ_DEBUG", raising=False)
    for argv in (["--debug", "translate", "--checkpoint", MISSING], ["translate", "--checkpoint", MISSING, "--debug"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback" in err and "CheckpointError" in err
        assert err.rstrip().endswith(f"seq2seq translate: error: {MISSING}: no such checkpoint")
    monkeypatch.setenv("SEQ2SEQ_DEBUG", "1")
    assert main(["translate", "--checkpoint", MISSING]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_a_bug_is_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import seq2seq.cli

    def broken(args: Any) -> None:
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.delenv("SEQ2SEQ_DEBUG", raising=False)
    monkeypatch.setitem(seq2seq.cli.COMMANDS, "average", broken)
    assert main(["average", "--output", "x.pt"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    assert "unexpected ZeroDivisionError: division by zero second line" in err
    assert "run with --debug for the traceback" in err
    assert main(["--debug", "average", "--output", "x.pt"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_a_closed_stdout_ends_quietly(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`seq2seq translate ... | head -1`: the reader went away; exit as SIGPIPE would, without a word."""
    import seq2seq.cli

    def reader_gone(args: Any) -> None:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setitem(seq2seq.cli.COMMANDS, "average", reader_gone)
    assert main(["average", "--output", "x.pt"]) == 141
    assert capsys.readouterr().err == ""


def test_an_interrupted_write_leaves_the_old_file(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk while a checkpoint is rewritten: the old file stays whole, as it was."""
    target = tmp_path / "model.pt"
    target.write_bytes(env.ckpt.read_bytes())
    before = target.read_bytes()
    full_disk(tmp_path, env, monkeypatch)
    with pytest.raises(OSError, match="cannot write: the disk is full"):
        write_checkpoint(target, read_checkpoint(env.ckpt))
    monkeypatch.undo()
    assert target.read_bytes() == before and sorted(tmp_path.iterdir()) == [target]


# --- scripts that read checkpoints say what is wrong, too -------------------------------------

CHECKPOINT_READERS = ("load_checkpoint", "read_checkpoint", "Translator")


def test_scripts_that_read_checkpoints_catch_the_error() -> None:
    for script in sorted((ROOT / "scripts").rglob("*.py")):
        text = script.read_text(encoding="utf-8")
        if any(name in text for name in CHECKPOINT_READERS):
            # seq2seq.train.experiment.outcome catches it for the experiment scripts
            catches = "Seq2SeqError" in text or "experiment.outcome(" in text
            assert catches, f"{script.name} reads checkpoints but never catches Seq2SeqError"


def test_a_script_prints_a_checkpoint_error(env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    script = load_script("phrase_map")
    (tmp_path / "bad.pt").write_bytes(env.ckpt.read_bytes()[:5000])
    (tmp_path / "phrases.txt").write_text("ein\nzwei\nHund\n", encoding="utf-8")
    argv = ["--checkpoint", str(tmp_path / "bad.pt"), str(tmp_path / "phrases.txt"), str(tmp_path / "map.png")]
    assert script.main(argv) == 2
    err = capsys.readouterr().err
    assert "phrase_map.py: error:" in err and "bad.pt: not a readable seq2seq checkpoint" in err
    assert not (tmp_path / "map.png").exists()
