"""What a translator returns, as plain data: the results of :class:`seq2seq.api.Translator`
and of the exported runtime (``seq2seq.export.runtime``), which never imports torch.

Standard library only (no torch, no numpy), so that any front end (the server, the exported
runtime, a user's script) can hold and serialise them: every field is a str, a float or a
(nested) list of them, and :func:`dataclasses.asdict` gives JSON-able dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Translation:
    """One hypothesis of one input line.

    ``token_log_probs`` has ``len(tokens) + 1`` entries, the last one EOS's, and sums to
    ``log_prob`` (a piece forced at the length limit counts 0). ``attention``, when asked
    for and the decoder attends: (len(tokens) + 1) rows (EOS last) of len(source_tokens) + 1
    weights (the source's EOS last), each row summing to 1.
    """

    text: str  # detokenized
    score: float  # log-probability after the length penalty (ranks the n-best list)
    log_prob: float  # total log-probability (natural log), EOS included
    tokens: list[str]  # target pieces, without EOS
    token_log_probs: list[float]  # len(tokens) + 1: each piece's, then EOS's
    source_tokens: list[str]  # source pieces (after any max_source_length cut), without EOS
    attention: list[list[float]] | None = None  # (len(tokens) + 1) x (len(source_tokens) + 1)


@dataclass(frozen=True)
class PairScore:
    """A force-decoded (teacher-forced) target: log p(target + EOS | source)."""

    log_prob: float  # total, natural log, EOS included
    tokens: list[str]  # target pieces, without EOS
    token_log_probs: list[float]  # len(tokens) + 1: each piece's, then EOS's


class Translates(Protocol):
    """What :class:`seq2seq.api.Translator` and the exported runtime both offer; a front end
    (the server) codes against this. Neither is thread-safe: call from one thread."""

    def translate(
        self,
        lines: Sequence[str],
        beam_size: int | None = None,
        n_best: int | None = None,
        return_attention: bool = False,
    ) -> list[list[Translation]]: ...

    def translate_iter(
        self,
        lines: Iterable[str],
        beam_size: int | None = None,
        n_best: int | None = None,
        return_attention: bool = False,
    ) -> Iterator[list[Translation]]: ...

    def score(self, pairs: Iterable[tuple[str, str]]) -> list[PairScore]: ...

    def source_lengths(self, lines: Sequence[str]) -> list[int]: ...

    @property
    def info(self) -> dict[str, Any]: ...
