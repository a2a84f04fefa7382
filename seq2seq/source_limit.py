"""``search.max_source_length``: the one rule for long source lines, applied by the torch
search (:mod:`seq2seq.translate`) and the exported runtime (:mod:`seq2seq.export.runtime`)
alike; torch-free, so that the runtime can import it."""

from __future__ import annotations

import logging

from seq2seq.config import SearchConfig
from seq2seq.errors import DataError

log = logging.getLogger(__name__)


def limit_source(src_ids: list[list[int]], search: SearchConfig, first_line: int = 1) -> list[list[int]]:
    """Hold each source to ``search.max_source_length`` pieces (0: no limit): a longer one is
    cut, with a logged warning, or refused (``search.long_source``) with :class:`DataError`;
    either names the line (``first_line`` is the number of ``src_ids[0]``). A long line costs
    time quadratic in its length with attention, so one stray line could hold up a whole
    file or a server."""
    limit = search.max_source_length
    if not limit:
        return src_ids
    for i, ids in enumerate(src_ids):
        if len(ids) > limit:
            what = f"line {first_line + i}: {len(ids)} source pieces, more than search.max_source_length ({limit})"
            if search.long_source == "refuse":
                raise DataError(f"{what}; shorten the line, or set search.long_source: truncate")
            log.warning("%s: translating its first %d pieces only", what, limit)
    return [ids[:limit] for ids in src_ids]


def searched_lengths(src_ids: list[list[int]], search: SearchConfig) -> list[int]:
    """Each source's pieces as :func:`limit_source` leaves them (what a token budget
    counts); refuses nothing: the search names a line too long."""
    limit = search.max_source_length
    return [min(len(ids), limit) if limit else len(ids) for ids in src_ids]
