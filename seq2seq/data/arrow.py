"""A dataset's list columns chunk by chunk, in row order, for
:func:`seq2seq.data.batching.to_parallel_data`.

Where a dataset is exactly its Arrow cache files (no index mapping, no dropped rows), the
files are read as Arrow IPC streams with plain reads: the dataset's own reader goes through
a memory map, which leaves every page it touched resident in this process until the dataset
is closed, a large part of the peak RSS at millions of pairs
(``scripts/bench/benchmark.py --data-scale`` measures it), while read pages stay in the
kernel's reclaimable page cache.

That fast path relies on two things ``datasets`` does not promise: the private attribute
``Dataset._indices`` (``None`` where no index mapping applies) and the format of the cache
files that ``Dataset.map`` writes (Arrow IPC streams holding the rows in order). Each is
checked once, at first use, on a tiny dataset; where a check fails, every dataset is read
through ``datasets``' public reader, which gives the same columns.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # datasets and pyarrow load only where a corpus is read, not to translate
    import datasets
    import pyarrow as pa

logger = logging.getLogger(__name__)

_READ_CHUNK = 100_000  # rows per chunk of the public reader


def column_chunks(ds: datasets.Dataset, names: list[str]) -> Iterator[dict[str, pa.Array]]:
    """The columns ``names`` of ``ds`` as Arrow arrays, chunk by chunk, in row order."""
    files = whole_cache_files(ds, names)
    if files is not None:
        yield from _stream_chunks(files, names)
        return
    for table in ds.select_columns(names).with_format("arrow").iter(batch_size=_READ_CHUNK):
        yield {name: table.column(name).combine_chunks() for name in names}


def whole_cache_files(ds: datasets.Dataset, names: list[str]) -> list[str] | None:
    """The cache files of ``ds`` where they hold exactly its rows, in order, with the columns
    ``names`` and can be read as streams (as ``Dataset.map`` writes them); else ``None``."""
    files = [f["filename"] for f in ds.cache_files]
    if not files or not index_mapping_visible() or not cache_files_are_streams():
        return None
    if ds._indices is not None or _stream_rows(files, names) != len(ds):
        return None
    return files


@functools.cache
def index_mapping_visible() -> bool:
    """Whether the private ``Dataset._indices`` still tells a dataset read straight from its
    table (``None``) from one with an index mapping (after ``select``, ``shuffle``, ...):
    checked once, on a tiny dataset."""
    import datasets

    table = datasets.Dataset.from_dict({"x": [0, 1, 2]})
    mapped = table.select([2, 0])
    ok = getattr(table, "_indices", False) is None and getattr(mapped, "_indices", None) is not None
    if not ok:
        logger.info("datasets %s: no Dataset._indices to rely on; reading its public way", datasets.__version__)
    return ok


@functools.cache
def cache_files_are_streams() -> bool:
    """Whether the cache files that ``Dataset.map`` writes are Arrow IPC streams holding the
    rows in order: checked once, on a tiny dataset mapped to a file in a temporary directory."""
    import datasets

    rows = {"a": [[1, 2], [], [3]], "b": [[4], [5, 6, 7], []]}
    names = list(rows)
    with tempfile.TemporaryDirectory() as tmp, _no_progress_bars():
        ds = datasets.Dataset.from_dict(rows).map(cache_file_name=str(Path(tmp) / "check.arrow"))
        files = [f["filename"] for f in ds.cache_files]
        read: dict[str, list[list[int]]] = {name: [] for name in names}
        if files and _stream_rows(files, names) == len(ds):
            for chunk in _stream_chunks(files, names):
                for name in names:
                    read[name] += chunk[name].to_pylist()
        del ds
    ok = read == rows
    if not ok:
        logger.info("datasets %s: cache files are not Arrow streams; reading its public way", datasets.__version__)
    return ok


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    import datasets

    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


def _stream_chunks(files: list[str], names: list[str]) -> Iterator[dict[str, pa.Array]]:
    """The record batches of the Arrow stream files, one after the other, with plain reads."""
    import pyarrow as pa

    for filename in files:
        with pa.OSFile(filename) as source:
            for batch in pa.ipc.open_stream(source):
                yield {name: batch.column(name) for name in names}


def _stream_rows(files: list[str], names: list[str]) -> int:
    """Rows in the Arrow stream files together; -1 where one is not a stream holding ``names``.

    Through a memory map, batches are zero-copy: counting their rows touches only the
    message headers, not the data, and the map is closed before the data is read."""
    import pyarrow as pa

    rows = 0
    for filename in files:
        try:
            with pa.memory_map(filename) as source:
                reader = pa.ipc.open_stream(source)
                if not all(name in reader.schema.names for name in names):
                    return -1
                rows += sum(batch.num_rows for batch in reader)
        except (OSError, pa.ArrowInvalid):
            return -1
    return rows
