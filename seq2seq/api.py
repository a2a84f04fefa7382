"""The Python API: :class:`Translator` loads a checkpoint (or several, an ensemble) and
translates, streams and scores raw text; the SentencePiece models travel in the checkpoint.

    >>> from seq2seq import Translator
    >>> t = Translator.load("runs/att/best.pt", beam_size=5)
    >>> best = t.translate(["Ein Hund läuft."])[0][0]
    >>> best.text, best.score, best.tokens, best.token_log_probs

``seq2seq translate``, ``evaluate`` and ``score`` are thin layers over it (they add file
handling and output formats), so the API gives the command's output byte for byte. Settings
are checked as the command line checks its flags, with the same :mod:`seq2seq.errors`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from seq2seq.checkpoint import Loaded, load_checkpoint, vocab_difference
from seq2seq.config import RunConfig, SearchConfig, TrainingConfig, check_n_best, with_search
from seq2seq.ensemble import Ensemble
from seq2seq.errors import ConfigError
from seq2seq.outputs import PairScore, Translation
from seq2seq.runtime import pick_device, set_threads
from seq2seq.schema import check_value
from seq2seq.score import pair_token_log_probs
from seq2seq.search import Hypothesis, Searchable
from seq2seq.source_limit import searched_lengths
from seq2seq.translate import check_shortlist, check_workers, translate_stream

SEARCH_KEYS = tuple(f.name for f in dataclasses.fields(SearchConfig))
EXPORT_MARKER = "model.json"  # a directory holding it is an exported model (seq2seq.export)


@dataclass(frozen=True)
class LoadOptions:
    """How :meth:`Translator.open` loads: device, threads, decoding workers and the search
    settings that override the first checkpoint's ``search`` section (any SearchConfig key).
    ``flags``: name settings as command-line flags (``--beam-size``) in error messages."""

    device: str = "auto"
    threads: int = 0
    workers: int = 1
    search: Mapping[str, Any] = field(default_factory=dict)
    flags: bool = False

    def key(self, name: str) -> str:
        return f"--{name.replace('_', '-')}" if self.flags else name


class Translator:
    """A loaded model (or ensemble) with its vocabularies and search settings.

    ``search`` holds the defaults (the first checkpoint's ``search`` section with the
    overrides given to :meth:`load`); ``config`` is the first checkpoint's run config. Not
    thread-safe: call it from one thread (the server runs it on one worker thread).
    """

    def __init__(
        self, members: Sequence[Loaded], search: SearchConfig, device: torch.device, workers: int, paths: Sequence[str]
    ) -> None:
        first = members[0]
        self.model: Searchable = first.model if len(members) == 1 else Ensemble([m.model for m in members])
        self.members = list(members)
        self.config: RunConfig = first.config
        self.src_vocab, self.tgt_vocab, self.shortlist = first.src_vocab, first.tgt_vocab, first.shortlist
        self.search, self.device, self.workers, self.paths = search, device, workers, list(paths)

    @classmethod
    def load(
        cls,
        path: str | Path | Sequence[str | Path],
        device: str = "auto",
        precision: str | None = None,
        threads: int = 0,
        workers: int = 1,
        kernels: bool | None = None,
        **search: Any,
    ) -> Translator:
        """Load one checkpoint, several (an ensemble: the mean of their probabilities; search
        settings from the first), or an exported model (a directory holding ``model.json``,
        read by ``seq2seq.export.runtime`` without torch: an object with the methods of
        :class:`seq2seq.outputs.Translates`). ``device``: auto, cpu or cuda;
        ``precision``, ``kernels`` and ``**search`` (beam_size, n_best, batch_size,
        max_source_length, ...) override the checkpoint's ``search`` section (None: keep
        it); ``threads``: CPU threads (0: every core); ``workers``: forked decoding
        processes (CPU only). Raises :class:`seq2seq.errors.Seq2SeqError` subclasses."""
        paths = [path] if isinstance(path, (str, Path)) else list(path)
        if len(paths) == 1 and (Path(paths[0]) / EXPORT_MARKER).is_file():
            from seq2seq.export.runtime import load_exported

            given = dict(device=device, precision=precision, threads=threads, workers=workers, kernels=kernels)
            # An ExportedTranslator: the methods, ``info`` and ``search`` of a Translator, no torch.
            return load_exported(paths[0], **given, **search)  # type: ignore[return-value]
        overrides = {**search, "precision": precision, "kernels": kernels}
        settings = {k: v for k, v in overrides.items() if v is not None}
        return cls.open(paths, LoadOptions(device, threads, workers, settings))

    @classmethod
    def open(cls, paths: Sequence[str | Path], options: LoadOptions) -> Translator:
        """Load checkpoints as :meth:`load` does; the checks that need no checkpoint run
        first, so that a bad setting fails before any file is read."""
        key = options.key
        if not paths:
            raise ConfigError(f"{key('checkpoint')}: give at least one checkpoint")
        unknown = sorted(set(options.search) - set(SEARCH_KEYS))
        if unknown:
            raise ConfigError(f"unknown search setting {unknown[0]!r}; choose from {', '.join(SEARCH_KEYS)}")
        given = {name: check_value(SearchConfig, name, v, key(name)) for name, v in options.search.items()}
        if "n_best" in given and "beam_size" in given:
            check_n_best(given["n_best"], given["beam_size"])
        set_threads(check_value(TrainingConfig, "threads", options.threads, key("threads")))
        device = pick_device(options.device, key("device"))
        check_workers(options.workers, device, key("workers"))

        names = [str(p) for p in paths]
        members = [load_checkpoint(p, device) for p in names]
        for name, other in zip(names[1:], members[1:]):
            side = vocab_difference(members[0], other)
            if side is not None:
                raise ConfigError(
                    f"{key('checkpoint')}: {name} has another {side} vocabulary than {names[0]}; "
                    "an ensemble needs models trained with the same SentencePiece models"
                )
        search = dataclasses.replace(members[0].config.search, **given)  # checks n_best against beam_size
        check_shortlist(search, members[0].shortlist, names[0])
        if search.kernels:
            from seq2seq.kernels import accelerate

            for name, member in zip(names, members):
                try:
                    accelerate(member.model, search.compile, frozen=True)
                except ValueError as e:
                    raise ConfigError(f"{key('compile')} {search.compile}: {name}: {e}") from None
        return cls(members, search, device, options.workers, names)

    def settings(self, beam_size: int | None = None, n_best: int | None = None) -> SearchConfig:
        """The search settings with a call's overrides, checked as the flags are."""
        return with_search(self.search, beam_size=beam_size, n_best=n_best)

    def translate(
        self,
        lines: Sequence[str],
        beam_size: int | None = None,
        n_best: int | None = None,
        return_attention: bool = False,
    ) -> list[list[Translation]]:
        """Translate raw sentences: per input, its n-best translations, best first. An empty
        line gives one empty translation. ``return_attention``: each translation's attention
        weights, where the decoder attends (None otherwise)."""
        return list(self.translate_iter(lines, beam_size, n_best, return_attention))

    def translate_iter(
        self,
        lines: Iterable[str],
        beam_size: int | None = None,
        n_best: int | None = None,
        return_attention: bool = False,
        chunk_lines: int = 10_000,
    ) -> Iterator[list[Translation]]:
        """:meth:`translate`, streamed in input order: lines are read ``chunk_lines`` at a
        time (searched in length-sorted batches within each), so inputs of any size work;
        ``chunk_lines=1`` answers each line as soon as it comes."""
        search = self.settings(beam_size, n_best)
        outputs = translate_stream(
            self.model,
            lines,
            search,
            self.src_vocab,
            self.tgt_vocab,
            self.device,
            chunk_lines=chunk_lines,
            attention=return_attention,
            shortlist=self.shortlist,
            workers=self.workers,
        )
        for src_ids, nbest in outputs:
            source_tokens = self.src_vocab.pieces(src_ids)
            yield [self._translation(text, hyp, source_tokens, return_attention) for text, hyp in nbest]

    def _translation(self, text: str, hyp: Hypothesis, source_tokens: list[str], attention: bool) -> Translation:
        weights = hyp.attention.float().tolist() if attention and hyp.attention is not None else None
        return Translation(
            text=text,
            score=hyp.score,
            log_prob=hyp.log_prob,
            tokens=self.tgt_vocab.pieces(hyp.tokens),
            token_log_probs=list(hyp.token_log_probs),
            source_tokens=source_tokens,
            attention=weights,
        )

    def score(self, pairs: Iterable[tuple[str, str]]) -> list[PairScore]:
        """Force-decode (source, target) pairs: log p(target + EOS | source) and its terms,
        in length-sorted batches of ``search.batch_size`` pairs, in input order. One model
        only (an ensemble has no single teacher-forced pass)."""
        if len(self.members) != 1:
            raise ConfigError("score takes one checkpoint, not an ensemble")
        pairs = list(pairs)
        src_ids = self.src_vocab.encode([s.strip() for s, _ in pairs])
        tgt_ids = self.tgt_vocab.encode([t.strip() for _, t in pairs])
        model, batch = self.members[0].model, self.search.batch_size
        scored = pair_token_log_probs(model, src_ids, tgt_ids, self.tgt_vocab, self.device, batch)
        return [PairScore(total, self.tgt_vocab.pieces(ids), terms) for ids, (total, terms) in zip(tgt_ids, scored)]

    def source_lengths(self, lines: Sequence[str]) -> list[int]:
        """Source pieces per line, as searched (after a ``max_source_length`` cut): what a
        token budget counts. Refuses no line: :meth:`translate` names a line too long."""
        return searched_lengths(self.src_vocab.encode([line.strip() for line in lines]), self.search)

    @property
    def attends(self) -> bool:
        """Whether the decoder has attention weights to return."""
        return self.config.model.decoder.type != "context"

    @property
    def info(self) -> dict[str, Any]:
        """What the model is, as JSON-able data: languages, decoder type and cells,
        parameters, vocabulary sizes, the search defaults, device and paths."""
        model, data = self.config.model, self.config.data
        return {
            "paths": self.paths,
            "src_lang": data.src_lang,
            "tgt_lang": data.tgt_lang,
            "decoder": model.decoder.type,
            "attention": self.attends,
            "encoder_cell": model.encoder.cell,
            "decoder_cell": model.decoder.cell,
            "parameters": sum(p.numel() for m in self.members for p in m.model.parameters()),
            "vocab_sizes": {"src": len(self.src_vocab), "tgt": len(self.tgt_vocab)},
            "search": dataclasses.asdict(self.search),
            "device": str(self.device),
            "workers": self.workers,
        }
