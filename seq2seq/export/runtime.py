"""Translate with an export directory (:mod:`seq2seq.export.onnx` writes one) without PyTorch:
onnxruntime runs the encoder and the decoder step, :mod:`seq2seq.export.search` searches in
numpy, SentencePiece reads and writes the text.

    from seq2seq.export.runtime import ExportedTranslator
    translator = ExportedTranslator.load("export/", beam_size=5)   # precision="int8": the --int8 graphs
    best = translator.translate(["Ein Hund läuft."])[0][0]           # a seq2seq.outputs.Translation
    print(best.text, best.score)

It answers as :class:`seq2seq.api.Translator` does (:class:`seq2seq.outputs.Translates`),
and ``Translator.load(DIR)`` returns one. Imports numpy, onnxruntime, sentencepiece and the
torch-free modules seq2seq.errors, seq2seq.config, seq2seq.schema and seq2seq.outputs, never torch.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seq2seq.config import SearchConfig, with_search
from seq2seq.errors import CheckpointError, ConfigError
from seq2seq.export.directory import Graphs, processor, read_json, session
from seq2seq.export.search import Hypothesis, beam_search, greedy_search
from seq2seq.outputs import PairScore, Translation
from seq2seq.schema import from_dict
from seq2seq.source_limit import limit_source, searched_lengths

PRECISIONS = {"auto": "file", "fp32": "file", "int8": "int8"}  # precision -> the graph entry to load


class ExportedTranslator:
    """An export directory, loaded: text in, :class:`~seq2seq.outputs.Translation` out.
    Not thread-safe (call from one thread), as :class:`seq2seq.api.Translator`."""

    def __init__(
        self, directory: Path, info: dict[str, Any], precision: str, threads: int, search: SearchConfig
    ) -> None:
        self.directory, self._info, self.precision, self.search = directory, info, precision, search
        vocab, graphs = info["vocab"], info["graphs"]
        self.src_sp, self.tgt_sp = processor(directory / vocab["src"]), processor(directory / vocab["tgt"])
        self.bos, self.eos, self.pad, self.unk = vocab["bos"], vocab["eos"], vocab["pad"], vocab["unk"]
        entry = PRECISIONS[precision]
        if any(entry not in graphs[name] for name in graphs):
            raise ConfigError(f"precision {precision}: {directory} has no {precision} graphs; export with --int8")
        encoder = session(directory / graphs["encoder"][entry], threads)
        attends = bool(info["model"]["attention"])
        self.full = Graphs(encoder, session(directory / graphs["decoder_step"][entry], threads), attends)
        self._threads, self._entry = threads, entry
        self._listed: tuple[Graphs, np.ndarray, np.ndarray] | None = None  # loaded when first searched with
        self.check_search(search)
        if search.shortlist:
            self._shortlist()

    def _shortlist(self) -> tuple[Graphs, np.ndarray, np.ndarray]:
        """The shortlist's step graph and table (frequent, translations), loaded once."""
        if self._listed is None:
            name = self._info["shortlist"]
            step = session(self.directory / self._info["graphs"]["decoder_step_shortlist"][self._entry], self._threads)
            try:
                with np.load(self.directory / name) as table:
                    frequent, translations = table["frequent"], table["translations"]
            except (OSError, KeyError, ValueError) as e:
                raise CheckpointError(f"{self.directory / name}: not a readable shortlist table ({e})") from None
            self._listed = Graphs(self.full.encoder, step, self.full.attends), frequent, translations
        return self._listed

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str = "auto",
        precision: str | None = None,
        threads: int = 0,
        workers: int = 1,
        kernels: bool | None = None,
        **search: Any,
    ) -> ExportedTranslator:
        """Load the export directory ``path``; ``search``: overrides of its search settings
        (beam_size, n_best, length_penalty, ..., shortlist). ``precision``: ``fp32`` (also
        ``auto``) or ``int8`` (the graphs of ``seq2seq export --int8``). The other arguments
        are :meth:`seq2seq.api.Translator.load`'s: CPU, one worker, no kernels."""
        if device not in ("auto", "cpu"):
            raise ConfigError(f"device: {device}: the exported runtime runs on the CPU; use auto or cpu")
        precision = precision or "auto"
        if precision not in PRECISIONS:
            raise ConfigError(f"precision: {precision!r}: the exported runtime runs {', '.join(PRECISIONS)}")
        if not isinstance(threads, int) or threads < 0:
            raise ConfigError(f"threads: {threads!r} must be 0 (every core) or more")
        if workers != 1:
            raise ConfigError(f"workers: {workers}: the exported runtime decodes in one process; use --threads")
        directory = Path(path)
        info = read_json(directory / "model.json")
        try:
            settings = from_dict(SearchConfig, {**info["search"], **search}, "search")
            return cls(directory, info, precision, threads, settings)
        except KeyError as e:
            where = directory / "model.json"
            raise CheckpointError(f"{where}: lacks the key {e}; export the checkpoint again") from None

    def check_search(self, search: SearchConfig) -> None:
        if search.shortlist and not self._info.get("shortlist"):
            raise ConfigError(
                f"search.shortlist: {search.shortlist}, but {self.directory} has no shortlist table; "
                "decode with shortlist 0"
            )

    @property
    def attends(self) -> bool:
        """Whether the decoder has attention weights to return."""
        return self.full.attends

    @property
    def info(self) -> dict[str, Any]:
        """What the model is, as JSON-able data, with the keys of :attr:`seq2seq.api.Translator.info`
        (``paths`` holds the directory) and the runtime's own: precision, versions, and the sha256
        of the checkpoint it was exported from."""
        model = self._info["model"]
        return {
            "paths": [str(self.directory)],
            "src_lang": model["src_lang"],
            "tgt_lang": model["tgt_lang"],
            "decoder": model["decoder"],
            "attention": self.attends,
            "encoder_cell": model["encoder_cell"],
            "decoder_cell": model["decoder_cell"],
            "parameters": model["parameters"],
            "vocab_sizes": {"src": self.src_sp.get_piece_size(), "tgt": self.tgt_sp.get_piece_size()},
            "search": dataclasses.asdict(self.search),
            "device": "cpu",
            "workers": 1,
            "runtime": "onnxruntime",
            "precision": "int8" if self.precision == "int8" else "fp32",
            "versions": self._info["versions"],
            "checkpoint_sha256": self._info["source_checkpoint"]["sha256"],
        }

    def source_lengths(self, lines: Sequence[str]) -> list[int]:
        """Source pieces per line, as searched (after a ``max_source_length`` cut)."""
        return searched_lengths(self._encode(lines), self.search)

    def _encode(self, lines: Iterable[str]) -> list[list[int]]:
        ids: list[list[int]] = self.src_sp.encode([line.strip() for line in lines], out_type=int)
        return ids

    def _settings(self, beam_size: int | None, n_best: int | None) -> SearchConfig:
        return with_search(self.search, beam_size=beam_size, n_best=n_best)

    def translate(
        self,
        lines: Sequence[str],
        beam_size: int | None = None,
        n_best: int | None = None,
        return_attention: bool = False,
    ) -> list[list[Translation]]:
        """Each line's n-best translations, best first, in input order."""
        return list(self.translate_iter(lines, beam_size, n_best, return_attention))

    def translate_iter(
        self,
        lines: Iterable[str],
        beam_size: int | None = None,
        n_best: int | None = None,
        return_attention: bool = False,
        chunk_lines: int = 10_000,
    ) -> Iterator[list[Translation]]:
        """As :meth:`translate`, streamed in input order: lines are read ``chunk_lines`` at a
        time (1: each line answered as soon as it comes)."""
        search = self._settings(beam_size, n_best)
        it, first_line = iter(lines), 1
        while chunk := list(itertools.islice(it, chunk_lines)):
            src_ids = limit_source(self._encode(chunk), search, first_line)
            first_line += len(chunk)
            for ids, hyps in zip(src_ids, self.search_ids(src_ids, search, return_attention)):
                yield [self._translation(ids, h) for h in hyps]

    def search_ids(self, src_ids: Sequence[list[int]], search: SearchConfig, attention: bool) -> list[list[Hypothesis]]:
        """Search encoded sentences in length-sorted batches (as :func:`seq2seq.translate.translate_ids`);
        an empty source gives one empty hypothesis."""
        results: list[list[Hypothesis]] = [[Hypothesis([], 0.0, 0.0, None, [0.0])] for _ in src_ids]
        order = sorted((i for i in range(len(src_ids)) if src_ids[i]), key=lambda i: -len(src_ids[i]))
        for start in range(0, len(order), search.batch_size):
            chunk = order[start : start + search.batch_size]
            for i, hyps in zip(chunk, self._search_batch([src_ids[i] for i in chunk], search, attention)):
                results[i] = hyps
        return results

    def _search_batch(self, batch: list[list[int]], search: SearchConfig, attention: bool) -> list[list[Hypothesis]]:
        src, lengths = self._padded([[*ids, self.eos] for ids in batch])
        graphs, vocab = self.full, None
        if search.shortlist:
            self.check_search(search)
            graphs, vocab = self._shortlist()[0], self._candidates(src, search)
        common: dict[str, Any] = dict(
            bos=self.bos,
            eos=self.eos,
            max_length_a=search.max_length_a,
            max_length_b=search.max_length_b,
            min_length=search.min_length,
            keep_attention=attention,
            vocab=vocab,
        )
        if search.beam_size == 1:
            return [[h] for h in greedy_search(graphs, src, lengths, **common)]
        return beam_search(
            graphs,
            src,
            lengths,
            beam_size=search.beam_size,
            n_best=search.n_best,
            length_penalty_kind=search.length_penalty,
            alpha=search.alpha,
            **common,
        )

    def _padded(self, rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Right-padded (N, max length) int64 ids and the lengths (N,)."""
        lengths = np.array([len(ids) for ids in rows], dtype=np.int64)
        batch = np.full((len(rows), int(lengths.max())), self.pad, dtype=np.int64)
        for i, ids in enumerate(rows):
            batch[i, : len(ids)] = ids
        return batch, lengths

    def score(self, pairs: Iterable[tuple[str, str]]) -> list[PairScore]:
        """Force-decode (source, target) pairs, a step at a time: log p(target + EOS | source)
        and its terms, in batches of ``search.batch_size`` pairs, in input order."""
        pairs = list(pairs)
        src_ids = self._encode([s for s, _ in pairs])
        tgt_ids: list[list[int]] = self.tgt_sp.encode([t.strip() for _, t in pairs], out_type=int)
        results: list[PairScore] = []
        for start in range(0, len(pairs), self.search.batch_size):
            chunk = range(start, min(start + self.search.batch_size, len(pairs)))
            src, lengths = self._padded([[*src_ids[i], self.eos] for i in chunk])
            tgt_in, _ = self._padded([[self.bos, *tgt_ids[i]] for i in chunk])
            tgt_out, out_lengths = self._padded([[*tgt_ids[i], self.eos] for i in chunk])
            encoded, state = self.full.encode(src, lengths)
            terms = np.zeros(tgt_out.shape, dtype=np.float32)
            for t in range(tgt_out.shape[1]):
                log_probs, state, _ = self.full.step(tgt_in[:, t], state, encoded, None)
                terms[:, t] = log_probs[np.arange(len(chunk)), tgt_out[:, t]]
            for row, i in enumerate(chunk):
                kept = terms[row, : out_lengths[row]]
                pieces = [self.tgt_sp.id_to_piece(x) for x in tgt_ids[i]]
                results.append(PairScore(float(kept.sum()), pieces, kept.tolist()))
        return results

    def _candidates(self, src: np.ndarray, search: SearchConfig) -> np.ndarray:
        """As :meth:`seq2seq.data.shortlist.Shortlist.candidates`: sorted distinct target ids."""
        _, frequent, translations = self._shortlist()
        rows = translations[np.unique(src), : search.shortlist].reshape(-1)
        always = np.array([self.eos, self.unk], dtype=rows.dtype)
        return np.unique(np.concatenate([frequent[: search.shortlist_frequent], rows[rows >= 0], always])).astype(
            np.int64
        )

    def _translation(self, src_ids: list[int], hyp: Hypothesis) -> Translation:
        specials = {self.pad, self.bos, self.eos}
        text: str = self.tgt_sp.decode([i for i in hyp.tokens if i not in specials])
        return Translation(
            text=text,
            score=hyp.score,
            log_prob=hyp.log_prob,
            tokens=[self.tgt_sp.id_to_piece(i) for i in hyp.tokens],
            token_log_probs=list(hyp.token_log_probs),
            source_tokens=[self.src_sp.id_to_piece(i) for i in src_ids],
            attention=None if hyp.attention is None else hyp.attention.tolist(),
        )


def load_exported(path: str | Path, **options: Any) -> ExportedTranslator:
    """:meth:`ExportedTranslator.load`: what ``seq2seq.api.Translator.load`` calls for a
    directory that holds ``model.json``."""
    return ExportedTranslator.load(path, **options)
