"""Read one split of a parallel corpus into a ``datasets.Dataset`` with string columns
``src`` and ``tgt``, one row per sentence pair, in file order.

Formats (``CorpusConfig.format``): ``text`` (a file per language), ``tsv``, ``jsonl``,
``hf`` (hub name or ``save_to_disk`` directory) and ``multi30k``. Text, TSV and JSONL go
through ``Dataset.from_generator`` so that large corpora land in an on-disk Arrow cache
keyed on each file's path, size and mtime. Every problem with the input raises
:class:`DataError` naming the file (and line) and what to do about it.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import zlib
from collections.abc import Callable, Iterator
from functools import partial
from itertools import zip_longest
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seq2seq.config import CorpusConfig
from seq2seq.errors import DataError

logger = logging.getLogger(__name__)

if TYPE_CHECKING:  # datasets loads only where a corpus is read, not to translate
    import datasets


def features() -> datasets.Features:
    """The columns every corpus is read into: ``src`` and ``tgt`` strings."""
    import datasets

    return datasets.Features({"src": datasets.Value("string"), "tgt": datasets.Value("string")})


MULTI30K_ENV = "SEQ2SEQ_MULTI30K"
MULTI30K_HUB = "bentrevett/multi30k"
_MULTI30K_HUB_SPLITS = {"train": "train", "val": "validation", "test_2016_flickr": "test"}
_GZIP_MAGIC = b"\x1f\x8b"

Pair = dict[str, str]


def load_corpus(corpus: CorpusConfig, src_lang: str, tgt_lang: str) -> datasets.Dataset:
    """Read ``corpus`` as a Dataset of ``{"src": str, "tgt": str}`` rows in file order.

    Line endings are stripped, text is otherwise unchanged and empty lines are kept
    (filtering happens after subword encoding)."""
    src_field = corpus.src_field or src_lang
    tgt_field = corpus.tgt_field or tgt_lang
    if corpus.format == "text":
        ds = _load_text(corpus.path, src_lang, tgt_lang)
    elif corpus.format == "tsv":
        ds = _from_generator(_tsv_pairs, path=_existing(corpus.path), src=src_field, tgt=tgt_field)
    elif corpus.format == "jsonl":
        ds = _from_generator(_jsonl_pairs, path=_existing(corpus.path), src=src_field, tgt=tgt_field)
    elif corpus.format == "hf":
        ds = _load_hf(corpus.path, corpus.split, src_field, tgt_field)
    elif corpus.format == "multi30k":
        ds = _load_multi30k(corpus.split, src_lang, tgt_lang)
    else:
        raise DataError(f"unknown corpus format {corpus.format!r}")
    logger.info("read %s corpus %s: %d pairs", corpus.format, corpus.path or corpus.split, len(ds))
    return ds


def _existing(path: str) -> str:
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file; check the corpus path in the data config")
    return path


def _open(path: str) -> gzip.GzipFile | io.BufferedReader:
    """Open plain or gzip-compressed (recognised by its magic bytes, not its name)."""
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == _GZIP_MAGIC else open(path, "rb")


def _read_lines(path: str) -> Iterator[str]:
    """Decoded lines without ``\\n`` / ``\\r\\n``. Binary reading splits on ``\\n`` only, so
    characters such as U+2028 or a lone ``\\r`` inside a sentence stay where they are."""
    with _open(path) as f:
        for number, raw in enumerate(_raw_lines(f, path), 1):
            if raw.endswith(b"\n"):
                raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{path}:{number}: not valid UTF-8 (byte {e.start} of the line); "
                    "convert the file to UTF-8, e.g. with iconv"
                ) from None


def _raw_lines(f: gzip.GzipFile | io.BufferedReader, path: str) -> Iterator[bytes]:
    """The lines of ``f``; a gzip file that is truncated, corrupt or fails its CRC check is
    a :class:`DataError` naming the file and the line where reading stopped."""
    number = 0  # lines read whole
    try:
        for raw in f:
            yield raw
            number += 1
    except (EOFError, OSError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        reason = "it ends early (truncated)" if isinstance(e, EOFError) else f"it is corrupt ({e})"
        raise DataError(
            f"{path}:{number + 1}: cannot decompress the gzip file: {reason}; download or compress it again"
        ) from None


def _from_generator(generator: Callable[..., Iterator[Pair]], **files_and_fields: str) -> datasets.Dataset:
    """Run ``generator`` through the datasets cache. Every ``*path`` argument also adds its
    size and mtime to the arguments, which are part of the cache key, so an edited file is
    read again instead of being served stale."""
    gen_kwargs: dict[str, Any] = dict(files_and_fields)
    for key, value in files_and_fields.items():
        if key.endswith("path"):
            stat = os.stat(value)
            gen_kwargs[f"{key}_stamp"] = f"{stat.st_size}:{stat.st_mtime_ns}"
    import datasets

    try:
        return datasets.Dataset.from_generator(generator, features=features(), gen_kwargs=gen_kwargs)
    except Exception as e:
        # datasets wraps errors raised while generating (DatasetGenerationError); the
        # DataError inside carries the message the user needs, so surface that one.
        cause = _find_data_error(e)
        if cause is None:
            raise
        raise cause from None


def _find_data_error(error: BaseException) -> DataError | None:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, DataError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _load_text(prefix: str, src_lang: str, tgt_lang: str) -> datasets.Dataset:
    src_path, tgt_path = _language_file(prefix, src_lang), _language_file(prefix, tgt_lang)
    return _from_generator(_text_pairs, src_path=src_path, tgt_path=tgt_path)


def _language_file(prefix: str, lang: str) -> str:
    tried = [f"{prefix}.{lang}", f"{prefix}.{lang}.gz"]
    for path in tried:
        if Path(path).is_file():
            return path
    raise DataError(f"no {lang} file for corpus {prefix!r}: tried {' and '.join(tried)}")


def _text_pairs(src_path: str, tgt_path: str, **_stamps: str) -> Iterator[Pair]:
    src_lines, tgt_lines = _read_lines(src_path), _read_lines(tgt_path)
    number = 0
    for number, (src, tgt) in enumerate(zip_longest(src_lines, tgt_lines), 1):
        if src is None or tgt is None:
            # Count the rest of the longer file so the message gives both totals.
            longer = number + sum(1 for _ in (src_lines if tgt is None else tgt_lines))
            n_src, n_tgt = (longer, number - 1) if tgt is None else (number - 1, longer)
            raise DataError(
                f"{src_path} has {n_src} lines but {tgt_path} has {n_tgt}; the two sides of a "
                "parallel corpus need exactly one line per sentence pair"
            )
        yield {"src": src, "tgt": tgt}
    if number == 0:
        raise DataError(f"{src_path} and {tgt_path} are empty; check the corpus path")


def _tsv_pairs(path: str, src: str, tgt: str, **_stamps: str) -> Iterator[Pair]:
    """Tab-separated, header row first. No quoting: quotes are part of the text."""
    lines = _read_lines(path)
    header = next(lines, None)
    if header is None:
        raise DataError(f"{path}: empty file; a TSV corpus needs a header row naming the columns")
    columns = header.split("\t")
    missing = [name for name in (src, tgt) if name not in columns]
    if missing:
        raise DataError(
            f"{path}:1: no column {missing[0]!r} in the header; columns present: "
            f"{', '.join(columns)}; set data.*.src_field / tgt_field"
        )
    i, j = columns.index(src), columns.index(tgt)
    number = 1
    for number, line in enumerate(lines, 2):
        fields = line.split("\t")
        if len(fields) != len(columns):
            raise DataError(
                f"{path}:{number}: {len(fields)} tab-separated fields, the header has "
                f"{len(columns)}; check for stray or missing tabs"
            )
        yield {"src": fields[i], "tgt": fields[j]}
    if number == 1:
        raise DataError(f"{path}: a header row but no sentence pairs; check the corpus path")


def _jsonl_pairs(path: str, src: str, tgt: str, **_stamps: str) -> Iterator[Pair]:
    """One JSON object per line; blank lines (e.g. a trailing one) are skipped."""
    count = 0
    for number, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{number}: not valid JSON ({e.msg}, column {e.colno})") from None
        if not isinstance(record, dict):
            kind = type(record).__name__
            raise DataError(f"{path}:{number}: expected a JSON object, got {kind}")
        for name in (src, tgt):
            if not isinstance(record.get(name), str):
                problem = "no field" if name not in record else "not a string in field"
                raise DataError(
                    f"{path}:{number}: {problem} {name!r}; fields present: {', '.join(record)}; "
                    "set data.*.src_field / tgt_field"
                )
        count += 1
        yield {"src": record[src], "tgt": record[tgt]}
    if count == 0:
        raise DataError(f"{path}: no JSON records; check the corpus path")


def _load_hf(path: str, split: str, src_field: str, tgt_field: str) -> datasets.Dataset:
    import datasets

    local = Path(path)
    # save_to_disk writes state.json (Dataset) or dataset_dict.json (DatasetDict).
    saved = any((local / name).is_file() for name in ("state.json", "dataset_dict.json"))
    load = datasets.load_from_disk if saved else partial(datasets.load_dataset, split=split)
    try:
        loaded = load(path)
    except Exception as e:
        raise DataError(f"{path}: cannot load Hugging Face dataset split {split!r}: {e}") from e
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataError(f"{path}: no split {split!r}; splits present: {', '.join(loaded)}")
        loaded = loaded[split]
    if not isinstance(loaded, datasets.Dataset):
        raise DataError(f"{path}: expected a Dataset, got {type(loaded).__name__}")
    return _select_fields(loaded, path, src_field, tgt_field)


def _select_fields(ds: datasets.Dataset, name: str, src_field: str, tgt_field: str) -> datasets.Dataset:
    """Keep the two text columns as ``src`` / ``tgt``, flat or nested under ``translation``."""
    columns = ds.column_names
    if src_field in columns and tgt_field in columns:
        ds = ds.select_columns([src_field, tgt_field])
        renames = {old: new for old, new in ((src_field, "src"), (tgt_field, "tgt")) if old != new}
        ds = ds.rename_columns(renames) if renames else ds
        return ds if ds.features == features() else ds.cast(features())
    if "translation" in columns and len(ds) > 0:
        languages = list(ds[0]["translation"])
        missing = [f for f in (src_field, tgt_field) if f not in languages]
        if not missing:
            return ds.map(
                _unnest,
                batched=True,
                fn_kwargs={"src": src_field, "tgt": tgt_field},
                remove_columns=columns,
                features=features(),
            )
        raise DataError(
            f"{name}: no language {missing[0]!r} in column 'translation'; languages present: "
            f"{', '.join(languages)}; set data.*.src_field / tgt_field"
        )
    raise DataError(
        f"{name}: no columns {src_field!r} and {tgt_field!r}; columns present: "
        f"{', '.join(columns)}; set data.*.src_field / tgt_field"
    )


def _unnest(batch: dict[str, list[Any]], src: str, tgt: str) -> dict[str, list[str]]:
    rows = batch["translation"]
    return {"src": [row[src] for row in rows], "tgt": [row[tgt] for row in rows]}


def _load_multi30k(split: str, src_lang: str, tgt_lang: str) -> datasets.Dataset:
    import datasets

    directory = os.environ.get(MULTI30K_ENV)
    if directory:
        return _load_text(str(Path(directory) / split), src_lang, tgt_lang)
    hub_split = _MULTI30K_HUB_SPLITS.get(split, split)
    try:
        ds = datasets.load_dataset(MULTI30K_HUB, split=hub_split)
    except Exception as e:
        raise DataError(
            f"cannot load {MULTI30K_HUB} split {hub_split!r} from the hub "
            f"({type(e).__name__}: {e}); "
            f"offline, set {MULTI30K_ENV} to a directory with the raw files "
            f"{split}.{src_lang}.gz and {split}.{tgt_lang}.gz"
        ) from e
    if not isinstance(ds, datasets.Dataset):
        raise DataError(f"{MULTI30K_HUB}: expected a Dataset, got {type(ds).__name__}")
    return _select_fields(ds, MULTI30K_HUB, src_lang, tgt_lang)
