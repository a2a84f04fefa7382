"""The configuration reference, generated from the config dataclasses of :mod:`seq2seq.config`.

Each section of a run config is one frozen dataclass; this module walks them from
:class:`~seq2seq.config.RunConfig` down and writes one Markdown table per section: the dotted
key, its type, its default, its valid choices or range (the field's ``choices`` / ``low`` /
``high`` metadata) and its description. Descriptions come from the source of
``seq2seq/config.py``: the class docstring for the section, and for a key the comment at the end
of its line together with any comment lines directly above it. So the reference cannot drift
from the code: ``python -m seq2seq.config_doc --check`` (run by the tests) fails when
``docs/configuration.md`` differs from what :func:`render` makes, and ``--write`` regenerates it.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import sys
import tokenize
import types
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from seq2seq import config
from seq2seq.atomic import atomic_open

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
COMMAND = "python -m seq2seq.config_doc --write"

INTRO = f"""\
# Configuration reference

<!-- Generated from seq2seq/config.py by `{COMMAND}`; do not edit by hand. -->

A run is described by one YAML file with the sections `data`, `model` (with `encoder` and
`decoder`), `training` and `search`; `configs/` holds one such file per recipe. Every key is
optional: a missing key takes the default below. `seq2seq train CONFIG --set KEY=VALUE` changes
one key from the command line (the value is read as YAML, e.g.
`--set training.learning_rate=5e-4`). The file is checked when it is loaded: an unknown key, a
value of the wrong type, a choice that is not listed or a number outside its range is an error
that names the dotted key and what would be valid. A few rules tie keys together (for example
`search.n_best` at most `search.beam_size`); `RunConfig.__post_init__` in `seq2seq/config.py`
checks them, with an error that names both keys.

Ranges are inclusive; "≥ 1" has no upper bound.
"""


@dataclasses.dataclass(frozen=True)
class Section:
    """One dataclass at one dotted prefix of the config tree (``model.encoder``)."""

    prefix: str
    cls: type[Any]


def sections(cls: type[Any] = config.RunConfig, prefix: str = "") -> Iterator[Section]:
    """The sections under ``cls`` in the order of its fields, depth first (``cls`` itself
    only when ``prefix`` is set: the top level has no keys of its own)."""
    if prefix:
        yield Section(prefix, cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        inner = _dataclass_in(hints[f.name])
        if inner is not None:
            yield from sections(inner, f"{prefix}.{f.name}" if prefix else f.name)


def _dataclass_in(tp: Any) -> type[Any] | None:
    """The dataclass that the annotation ``tp`` holds (``CorpusConfig | None`` included), if any."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        found = [a for a in typing.get_args(tp) if isinstance(a, type) and dataclasses.is_dataclass(a)]
        return found[0] if found else None
    return tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None


def field_comments(source: str) -> dict[tuple[str, str], str]:
    """``(class name, field name)`` -> the comment lines directly above the field and the
    comment at the end of its last line, in the module ``source``, joined by spaces."""
    comments: dict[int, tuple[str, bool]] = {}  # line -> (text, whether the line holds nothing else)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            alone = not tok.line[: tok.start[1]].strip()
            comments[tok.start[0]] = (tok.string.lstrip("#").strip(), alone)
    found: dict[tuple[str, str], str] = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for stmt in node.body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            above: list[str] = []
            line = stmt.lineno - 1
            while line in comments and comments[line][1]:
                above.insert(0, comments[line][0])
                line -= 1
            end = comments.get(stmt.end_lineno or stmt.lineno)
            parts = [*above, end[0]] if end and not end[1] else above
            found[(node.name, stmt.target.id)] = " ".join(parts)
    return found


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        inner = " or ".join(_type_name(a) for a in args)
        return f"{inner} or null" if len(args) < len(typing.get_args(tp)) else inner
    if dataclasses.is_dataclass(tp):
        return "section"
    if typing.get_origin(tp) is tuple:
        items = typing.get_args(tp)
        return f"list of {len(items)} {_type_name(items[0])}s"
    names = {bool: "true/false", int: "integer", float: "number", str: "string"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _yaml_value(value: Any) -> str:
    """``value`` as it would be written in the YAML file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return value if value else '""'
    text = repr(value)
    if isinstance(value, float) and "e" in text and "." not in text:
        text = text.replace("e", ".0e")  # YAML reads 1e-06 as a string, 1.0e-06 as a number
    return text


def _valid(f: dataclasses.Field[Any]) -> str:
    choices = f.metadata.get("choices")
    if choices:
        return ", ".join(f"`{c}`" for c in choices)
    low, high = f.metadata.get("low"), f.metadata.get("high")
    if low is not None and high is not None:
        return f"{_yaml_value(low)} – {_yaml_value(high)}"
    if low is not None:
        return f"≥ {_yaml_value(low)}"
    if high is not None:
        return f"≤ {_yaml_value(high)}"
    return ""


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise AssertionError(f"config field {f.name} has no default")


def _markdown(text: str) -> str:
    """A docstring or comment as Markdown: reStructuredText's ``code`` becomes `code`, and
    table cells keep their pipes."""
    return text.replace("``", "`").replace("|", "\\|")


def render_section(section: Section, comments: dict[tuple[str, str], str], same_as: str = "") -> str:
    """One section's heading, docstring (or, for a class already shown at ``same_as``, a
    pointer there) and table of keys."""
    cls = section.cls
    lines = [f"## `{section.prefix}`", ""]
    doc = inspect.getdoc(cls)
    if same_as:
        lines += [f"The same keys as `{same_as}`.", ""]
    elif doc and not doc.startswith(f"{cls.__name__}("):  # not the signature that dataclass makes up
        lines += [_markdown(" ".join(doc.split())), ""]
    lines += ["| key | type | default | valid | description |", "|---|---|---|---|---|"]
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{section.prefix}.{f.name}"
        default = _default(f)
        shown = f"see `{key}` below" if dataclasses.is_dataclass(default) else f"`{_yaml_value(default)}`"
        if default is None and _dataclass_in(hints[f.name]) is not None:
            shown = "`null` (none)"
        description = _markdown(comments.get((cls.__name__, f.name), ""))
        lines.append(f"| `{key}` | {_type_name(hints[f.name])} | {shown} | {_valid(f)} | {description} |")
    return "\n".join(lines) + "\n"


def render() -> str:
    """The whole reference, as Markdown."""
    comments = field_comments(inspect.getsource(config))
    first: dict[type[Any], str] = {}  # class -> the prefix where it was first shown
    parts = [INTRO]
    for section in sections():
        parts.append(render_section(section, comments, first.get(section.cls, "")))
        first.setdefault(section.cls, section.prefix)
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m seq2seq.config_doc", description="Generate or check the configuration reference."
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="write the reference (atomically)")
    action.add_argument("--check", action="store_true", help="exit 1 if the file differs from the generated text")
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH, help=f"default: {DEFAULT_PATH}")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        with atomic_open(args.path, "w", encoding="utf-8") as f:
            f.write(text)
        return 0
    try:
        current = args.path.read_text(encoding="utf-8")
    except OSError as e:
        print(f"{args.path}: cannot read ({e.strerror}); generate it with: {COMMAND}", file=sys.stderr)
        return 1
    if current != text:
        print(f"{args.path} is out of date with seq2seq/config.py; regenerate it with: {COMMAND}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
