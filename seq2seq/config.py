"""Typed run configuration: one frozen dataclass per YAML section, checked at load.

A run is described by one YAML file with the sections ``data``, ``model`` (with
``encoder`` and ``decoder``), ``training`` and ``search``. :func:`load_config` reads
it, applies ``--set key=value`` overrides and returns a frozen :class:`RunConfig`.
Every problem raises :class:`ConfigError` naming the dotted key, the value and
what would be valid; the checking machinery is :mod:`seq2seq.schema`. This module
imports only the standard library and yaml, so ``seq2seq --help`` and config checks
stay fast.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from seq2seq.errors import ConfigError
from seq2seq.schema import (
    apply_override,
    bounded,
    check_value,
    choice,
    from_dict,
    to_plain,
    yaml_problem,
)

CORPUS_FORMATS = ("text", "tsv", "jsonl", "hf", "multi30k")
DEVICES = ("auto", "cpu", "cuda")  # auto: CUDA when present (seq2seq.runtime.pick_device)
SHORTLIST_MAX = 100  # translations a checkpoint keeps per source piece (seq2seq.data.shortlist)
SHORTLIST_FREQUENT_MAX = 2_000  # frequent target pieces it keeps
# torch.compile modes of the fused decoder's step loop (seq2seq.kernels.input_feeding)
COMPILE_MODES = ("none", "default", "reduce-overhead")


@dataclass(frozen=True)
class CorpusConfig:
    """Where one split of a parallel corpus comes from.

    ``format``: ``text`` (``path`` is a prefix: ``{path}.{lang}`` or ``{path}.{lang}.gz``),
    ``tsv`` / ``jsonl`` (one file, columns named by ``src_field`` / ``tgt_field``, by default
    the language codes), ``hf`` (a Hugging Face dataset name or local directory, ``split``),
    ``multi30k`` (the raw Multi30k files from the directory in ``$SEQ2SEQ_MULTI30K`` if set,
    else the hub dataset ``bentrevett/multi30k``; ``split`` is ``train``, ``val`` or
    ``test_2016_flickr``).
    """

    # text: a file per language; tsv, jsonl: one file for both; hf: a Hugging Face dataset; multi30k: Multi30k
    format: str = choice("text", *CORPUS_FORMATS)
    path: str = ""  # text: the file prefix; tsv, jsonl: the file; hf: a hub name or a local directory
    split: str = "train"  # hf, multi30k: the split to read
    src_field: str = ""  # tsv, jsonl, hf: the source column (or key under translation); empty: data.src_lang
    tgt_field: str = ""  # tsv, jsonl, hf: the target column (or key under translation); empty: data.tgt_lang


@dataclass(frozen=True)
class SubwordConfig:
    """SentencePiece models, trained on the training data when a run starts."""

    type: str = choice("unigram", "unigram", "bpe")  # SentencePiece model type
    vocab_size: int = bounded(8000, 16)  # pieces per SentencePiece model, at most (a small corpus gives fewer)
    joint: bool = True  # one model for both languages (spm.model); false: src.model and tgt.model
    character_coverage: float = bounded(1.0, 0.5, 1.0)  # share of characters the model covers (SentencePiece's option)
    input_sentence_size: int = bounded(0, 0)  # 0: all sentences; else a random sample


@dataclass(frozen=True)
class DataConfig:
    """The corpora, their languages and subwords, and how pairs are filtered and batched."""

    src_lang: str = "de"  # source language code: the file suffix of text corpora, the default column name
    tgt_lang: str = "en"  # target language code
    train: CorpusConfig = CorpusConfig()  # the training pairs, on which the subword models are trained too
    dev: CorpusConfig = CorpusConfig()  # validation (dev loss and BLEU); evaluate --split dev reads it
    test: CorpusConfig | None = None  # optional; evaluate --split test reads it
    subwords: SubwordConfig = SubwordConfig()
    max_length: int = bounded(100, 1)  # pieces per side; longer training pairs are dropped
    batch_tokens: int = bounded(4096, 1)  # padded tokens per batch: n * max(src_len, tgt_len)
    batch_sentences: int = bounded(0, 0)  # if > 0, batches hold this many sentences instead
    num_proc: int = bounded(1, 1)  # processes encoding subwords (datasets.map); more for big corpora


# The recurrent cells, by the name a config gives them (seq2seq.models.cells builds each).
CELLS = ("rnn", "gru", "lstm", "lstm_peephole", "lstmp", "layernorm_gru", "layernorm_lstm")


def parse_cells(text: str) -> list[str]:
    """A ``--cells`` flag's comma-separated cell names (the experiment scripts'); :class:`ConfigError`
    naming the first that is not in :data:`CELLS`, or the flag when none is given."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in CELLS]
    if not names or bad:
        raise ConfigError(
            f"--cells: {bad[0] if bad else text!r} is not one of {', '.join(CELLS)}; give a comma-separated list"
        )
    return names


@dataclass(frozen=True)
class EncoderConfig:
    """The source embeddings and the recurrent stack that reads them (the recurrent-stack options are the
    decoder's too)."""

    cell: str = choice("gru", *CELLS)  # recurrent cell, built by seq2seq.models.cells
    embedding_dim: int = bounded(256, 1)  # source embedding size
    hidden_size: int = bounded(256, 1)  # per direction, as in torch.nn.GRU
    num_layers: int = bounded(1, 1)  # stacked recurrent layers
    bidirectional: bool = True  # read the source in both directions; outputs have twice the features
    dropout: float = bounded(0.3, 0.0, 1.0)  # on embeddings, between layers and on the outputs
    # Recurrent-stack options, the same for the decoder (see seq2seq.models.cells):
    proj_size: int = bounded(0, 0)  # lstmp only: output (and recurrent) units, < hidden_size
    residual: bool = False  # layers above the first add their input to their output
    forget_bias: float = 1.0  # LSTMs: initial forget-gate bias (Gers et al. 2000)
    # orthogonal: each gate's block of the recurrent weights orthogonal (Saxe et al. 2014); default: torch's RNN init
    recurrent_init: str = choice("default", "default", "orthogonal")
    # variational: between layers one mask per sequence, and one on the recurrent state (Gal & Ghahramani 2016)
    dropout_type: str = choice("plain", "plain", "variational")


@dataclass(frozen=True)
class DecoderConfig:
    """``type``: ``context`` (Cho et al. 2014: the fixed summary at every step),
    ``bahdanau`` (Bahdanau et al. 2015: the previous state attends, the context enters the
    recurrence and the deep output) or ``luong`` (Luong et al. 2015: the new state attends,
    h̃ = tanh(W_c [c; h]), optionally fed to the next step: ``input_feeding``).
    ``attention``: the score, ``mlp`` (additive), ``dot`` or ``general``; ``attention_size``
    is the additive attention's hidden size (0: ``hidden_size``). ``output_layer`` applies to
    ``context`` and ``bahdanau``; for ``luong``, ``output_size`` is the size of h̃."""

    type: str = choice("context", "context", "bahdanau", "luong")  # the paper the decoder follows (see above)
    cell: str = choice("gru", *CELLS)  # as model.encoder.cell
    embedding_dim: int = bounded(256, 1)  # target embedding size
    hidden_size: int = bounded(512, 1)  # recurrent units per layer
    num_layers: int = bounded(1, 1)  # stacked recurrent layers
    dropout: float = bounded(0.3, 0.0, 1.0)  # on embeddings, between layers and on the output features
    attention: str = choice("mlp", "mlp", "dot", "general")  # bahdanau, luong: the score function
    attention_size: int = bounded(0, 0)  # mlp attention's hidden size; 0: hidden_size
    input_feeding: bool = True  # luong: feed h̃ to the next step's input (Luong et al. 2015, 3.3)
    output_layer: str = choice("maxout", "maxout", "linear")  # context, bahdanau: the deep output's layer
    output_size: int = bounded(256, 1)  # size of the deep output (or of h̃) before the vocabulary
    tie_embeddings: bool = False  # needs output_size == embedding_dim
    proj_size: int = bounded(0, 0)  # as model.encoder.proj_size
    residual: bool = False  # as model.encoder.residual
    forget_bias: float = 1.0  # as model.encoder.forget_bias
    recurrent_init: str = choice("default", "default", "orthogonal")  # as model.encoder.recurrent_init
    dropout_type: str = choice("plain", "plain", "variational")  # as model.encoder.dropout_type


# What fused_decoder asks for, as the error messages say it.
FUSED_DECODER = (
    "model.decoder: type luong, cell gru, num_layers 1, attention mlp, input_feeding true, no residual, "
    "dropout_type plain"
)


def fused_decoder(
    decoder_type: str,
    cell: str,
    num_layers: int,
    attention: str,
    input_feeding: bool,
    residual: bool,
    variational: bool,
) -> bool:
    """Whether a decoder with these settings runs as the fused input-feeding loop
    (:mod:`seq2seq.kernels.decoder`), which alone has a compiled step loop. The one statement
    of that rule: the config's checks and the kernel's ``supports`` both call it."""
    return (
        decoder_type == "luong"
        and input_feeding
        and cell == "gru"
        and num_layers == 1
        and attention == "mlp"
        and not residual
        and not variational
    )


@dataclass(frozen=True)
class ModelConfig:
    """The encoder, the decoder and the bridge that makes the decoder's first state from the encoder's."""

    encoder: EncoderConfig = EncoderConfig()
    decoder: DecoderConfig = DecoderConfig()
    # tanh: final states -> linear -> tanh (Cho); mean: mean annotation -> linear -> tanh;
    # last: the final state itself (sizes must match); zero
    bridge: str = choice("tanh", "tanh", "mean", "last", "zero")


@dataclass(frozen=True)
class TrainingConfig:
    """Device, precision, fast paths, optimizer, learning-rate schedule, budget, validation and checkpoints."""

    # seeds the weights, dropout masks, batch order and the training of the subword models
    seed: int = bounded(42, 0, 2**32 - 1)
    device: str = choice("auto", *DEVICES)  # auto: CUDA when torch sees it, else CPU
    precision: str = choice("auto", "auto", "fp32", "bf16", "fp16")  # auto: bf16 on GPUs that have it, else fp32
    threads: int = bounded(0, 0)  # 0: every core this process may use
    # The fast paths of seq2seq.kernels (same equations, same results up to rounding); false runs
    # the plain model of seq2seq.models alone
    kernels: bool = True
    # torch.compile of the decoder's step loop (the fused input-feeding GRU decoder with mlp
    # attention only); reduce-overhead: also CUDA graphs on GPUs
    compile: str = choice("none", *COMPILE_MODES)
    optimizer: str = choice("adam", "adam", "adamw")  # torch.optim.Adam or AdamW, with the fused update
    learning_rate: float = bounded(3e-4, 0.0)  # the peak rate, reached at the end of warm-up
    betas: tuple[float, float] = (0.9, 0.999)  # Adam's (beta1, beta2), each in [0, 1)
    weight_decay: float = bounded(0.0, 0.0)  # L2 (adam) or decoupled (adamw; Loshchilov & Hutter 2019)
    # after warm-up: constant; inverse_sqrt (Vaswani et al. 2017); plateau: decay when dev scores stall
    scheduler: str = choice("constant", "constant", "plateau", "inverse_sqrt")
    warmup_steps: int = bounded(0, 0)  # updates of linear warm-up from 0; 0: none
    decay_factor: float = bounded(0.5, 0.0, 1.0)  # plateau: lr multiplier
    decay_patience: int = bounded(2, 0)  # plateau: validations without improvement
    # plateau: what counts as improvement; dev BLEU when the loss keeps creeping down while
    # BLEU has stalled (as Joey NMT, whose plateau follows its early-stopping metric)
    decay_metric: str = choice("loss", "loss", "bleu")
    min_learning_rate: float = bounded(1e-6, 0.0)  # floor of the rate after warm-up, whatever the scheduler
    clip_grad_norm: float = bounded(5.0, 0.0)  # 0: no clipping
    label_smoothing: float = bounded(0.0, 0.0, 1.0)  # share of probability spread evenly over the vocabulary
    accumulate: int = bounded(1, 1)  # batches per update
    max_epochs: int = bounded(20, 0)  # 0: no limit
    max_steps: int = bounded(0, 0)  # 0: no limit
    max_minutes: float = bounded(0.0, 0.0)  # wall-time budget; 0: no limit
    validate_every: int = bounded(1000, 1)  # steps
    keep_checkpoints: int = bounded(0, 0)  # keep the weights of the last K validations as ckpt-STEP.pt
    save_every: int = bounded(0, 0)  # steps between last.pt writes; 0: at validation (and save_minutes)
    save_minutes: float = bounded(5.0, 0.0)  # also write last.pt when this long has passed since it was; 0: never
    # updates in a row with a non-finite loss or gradient norm (each skipped) that stop the run as diverged
    max_bad_updates: int = bounded(5, 1)
    log_every: int = bounded(50, 1)  # steps between training log records (metrics.jsonl, TensorBoard, the log)
    # what best.pt and patience follow: dev BLEU or dev loss (the plateau scheduler: decay_metric)
    early_stopping_metric: str = choice("bleu", "bleu", "loss")
    patience: int = bounded(0, 0)  # validations without improvement; 0: never stop early
    validation_beam_size: int = bounded(1, 1)  # 1: greedy

    def __post_init__(self) -> None:
        check_compile("training", self.compile, self.kernels)
        for i, beta in enumerate(self.betas):
            if not 0.0 <= beta < 1.0:  # Adam's moving averages need it
                raise ConfigError(f"training.betas[{i}]: {beta!r} is outside [0, 1)")


def check_compile(section: str, compile: str, kernels: bool) -> None:
    """The compiled step loop is a kernel's: the one home of the rule that ``compile`` needs
    ``kernels``, for the config and the command line."""
    if compile != "none" and not kernels:
        raise ConfigError(f"{section}.compile: {compile} needs {section}.kernels: true; use none")


def check_n_best(n_best: int, beam_size: int) -> None:
    """A beam search returns at most ``beam_size`` hypotheses per sentence: the one home of
    the rule 1 <= n_best <= beam_size, for the config, the command line and the search."""
    if not 1 <= n_best <= beam_size:
        raise ConfigError(f"search.n_best: {n_best} must be in 1..search.beam_size ({beam_size})")


@dataclass(frozen=True)
class SearchConfig:
    """Greedy or beam search, for translate and evaluate (whose flags override it) and for validation (with
    training.validation_beam_size)."""

    beam_size: int = bounded(5, 1)  # 1: greedy search
    n_best: int = bounded(1, 1)  # hypotheses per sentence, at most beam_size
    # divisor of a hypothesis' log-probability: none; average: its length (EOS included); gnmt: Wu et al. (2016)
    length_penalty: str = choice("gnmt", "none", "average", "gnmt")
    alpha: float = bounded(1.0, 0.0)  # gnmt: ((5 + len) / 6) ** alpha
    max_length_a: float = bounded(1.5, 0.0)  # max output pieces = a * source pieces + b
    max_length_b: int = bounded(10, 0)  # see max_length_a
    min_length: int = bounded(0, 0)  # target pieces before EOS is allowed
    batch_size: int = bounded(64, 1)  # sentences per decoding batch
    precision: str = choice("auto", "auto", "fp32", "bf16")  # bf16: autocast products; auto: bf16 on GPUs that have it
    kernels: bool = True  # as training.kernels
    compile: str = choice("none", *COMPILE_MODES)  # as training.compile
    # Vocabulary selection (seq2seq.data.shortlist): decode over the shortlist_frequent most frequent
    # target pieces plus the shortlist strongest of each source piece; 0 = the full vocabulary.
    shortlist: int = bounded(0, 0, SHORTLIST_MAX)
    # with shortlist > 0: how many of the most frequent target pieces are always searched over
    shortlist_frequent: int = bounded(500, 0, SHORTLIST_FREQUENT_MAX)
    # source pieces of a line to translate (translate, evaluate, the Python API); 0: no limit
    max_source_length: int = bounded(256, 0)
    # a line past max_source_length: truncate (cut, with a warning naming the line) or refuse (an error naming it)
    long_source: str = choice("truncate", "truncate", "refuse")

    def __post_init__(self) -> None:  # also after dataclasses.replace
        check_n_best(self.n_best, self.beam_size)
        check_compile("search", self.compile, self.kernels)


def with_search(search: SearchConfig, **given: Any) -> SearchConfig:
    """``search`` with the settings ``given`` by one call (a translate call, a request), each
    checked as its config key and flag are (None: keep ``search``'s); n_best against
    beam_size as :class:`SearchConfig` checks it."""
    changes = {k: check_value(SearchConfig, k, v, k) for k, v in given.items() if v is not None}
    return dataclasses.replace(search, **changes) if changes else search


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    search: SearchConfig = SearchConfig()

    def __post_init__(self) -> None:
        for name, part in (("encoder", self.model.encoder), ("decoder", self.model.decoder)):
            key = f"model.{name}"
            if part.cell == "lstmp" and not 0 < part.proj_size < part.hidden_size:
                raise ConfigError(
                    f"{key}.proj_size: {part.proj_size} must be in 1..{key}.hidden_size - 1 "
                    f"({part.hidden_size - 1}) for cell lstmp"
                )
            if part.cell != "lstmp" and part.proj_size:
                raise ConfigError(f"{key}.proj_size: {part.proj_size} needs {key}.cell: lstmp (is {part.cell})")
        dec = self.model.decoder
        if dec.tie_embeddings and dec.output_size != dec.embedding_dim:
            raise ConfigError(
                f"model.decoder.tie_embeddings: true needs model.decoder.output_size "
                f"({dec.output_size}) == model.decoder.embedding_dim ({dec.embedding_dim})"
            )
        enc = self.model.encoder
        enc_size = (enc.proj_size or enc.hidden_size) * (2 if enc.bidirectional else 1)
        dec_size = dec.proj_size or dec.hidden_size  # the decoder's h (a projected LSTM's is smaller)
        if self.model.bridge == "last" and enc_size != dec_size:
            raise ConfigError(
                f"model.bridge: last copies the encoder's final state ({enc_size} features) into the decoder: "
                f"model.decoder.hidden_size (or proj_size; {dec_size}) must equal it; or use bridge tanh or mean"
            )
        if dec.type != "context" and dec.attention == "dot" and enc_size != dec_size:
            raise ConfigError(
                f"model.decoder.attention: dot needs model.decoder.hidden_size (or proj_size; {dec_size}) == the "
                f"encoder's output size ({enc_size}); use general or mlp"
            )
        fused = fused_decoder(
            dec.type,
            dec.cell,
            dec.num_layers,
            dec.attention,
            dec.input_feeding,
            dec.residual,
            dec.dropout_type == "variational",
        )
        for section in ("training", "search"):
            part = getattr(self, section)
            if part.compile != "none" and not fused:
                raise ConfigError(
                    f"{section}.compile: {part.compile} compiles the step loop of the fused decoder only "
                    f"({FUSED_DECODER}); use none"
                )


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML run config, apply ``--set`` overrides and check everything."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); convert the config to UTF-8") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(e)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    for assignment in overrides:
        apply_override(raw, assignment)
    try:
        return config_from_dict(raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def config_from_dict(raw: Mapping[str, Any]) -> RunConfig:
    config: RunConfig = from_dict(RunConfig, raw)
    return config


config_to_dict = to_plain  # plain data (dicts, lists, str, numbers) for YAML files and checkpoints


def cell_overrides(cell: str, config: RunConfig) -> list[str]:
    """``--set`` assignments (``KEY=VALUE``) that put ``cell`` in the encoder and the decoder
    of ``config``; ``lstmp`` projects to half of each hidden size. For comparing cells on
    one config (``scripts/compare_cells.py``, ``scripts/bench/benchmark.py --cells``)."""
    sets = [f"model.encoder.cell={cell}", f"model.decoder.cell={cell}"]
    if cell == "lstmp":
        enc, dec = config.model.encoder.hidden_size, config.model.decoder.hidden_size
        sets += [f"model.encoder.proj_size={enc // 2}", f"model.decoder.proj_size={dec // 2}"]
    return sets
