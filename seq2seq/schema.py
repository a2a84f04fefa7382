"""Frozen dataclasses built from plain data and checked field by field.

The machinery under :mod:`seq2seq.config`: a field declares its choices (:func:`choice`) or
range (:func:`bounded`) in its metadata; :func:`from_dict` converts every value against the
type hints and raises :class:`ConfigError` naming the dotted key, the value and what would be
valid. Also the ``--set KEY=VALUE`` overrides and one-line YAML errors. Standard library and
yaml only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import Any

import yaml

from seq2seq.errors import ConfigError


def choice(default: str, *choices: str) -> Any:
    """A string field that must be one of ``choices``."""
    return field(default=default, metadata={"choices": choices})


def bounded(default: float | int, low: float | None = None, high: float | None = None) -> Any:
    """A number field within [``low``, ``high``] (``None``: no bound)."""
    return field(default=default, metadata={"low": low, "high": high})


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it in that type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, key)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping of keys, got {value!r}")
        return from_dict(tp, value, key)  # type: ignore[arg-type]
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} numbers, got {value!r}")
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML reads 5e-4 (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):  # no key has a meaning for NaN or infinity
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise AssertionError(f"unhandled annotation {tp!r} for {key}")


def from_dict(cls: type[Any], data: Mapping[str, Any], prefix: str = "") -> Any:
    """Build the dataclass ``cls`` from ``data``, checking every key recursively."""
    fields = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in fields:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(f"{where}: unknown key; valid keys here: {', '.join(fields)}")
    kwargs = {}
    for name in fields:
        if name in data:
            kwargs[name] = check_value(cls, name, data[name], f"{prefix}.{name}" if prefix else name)
    return cls(**kwargs)


def check_value(cls: type[Any], name: str, value: Any, key: str) -> Any:
    """``value`` for the field ``name`` of the config dataclass ``cls``, converted to the
    field's type and checked against its choices and range; :class:`ConfigError` naming
    ``key`` otherwise. :func:`from_dict` checks every key with it, the command line its flags."""
    (f,) = [f for f in dataclasses.fields(cls) if f.name == name]
    value = _convert(value, typing.get_type_hints(cls)[name], key)
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(choices)}")
    _check_range(value, f.metadata.get("low"), f.metadata.get("high"), key)
    return value


def check_number(value: Any, kind: type[int] | type[float], low: float | None, high: float | None, key: str) -> Any:
    """``value`` as ``kind`` (int or float, finite) within [``low``, ``high``] (``None``: no
    bound), checked as config keys are: the rule for the command-line numbers that have no
    config key (``--workers``, ``--port``, ...); :class:`ConfigError` naming ``key`` otherwise."""
    value = _convert(value, kind, key)
    _check_range(value, low, high, key)
    return value


def _check_range(value: Any, low: float | None, high: float | None, key: str) -> None:
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise ConfigError(f"{key}: {value!r} is outside {bounds}")


def field_choices(cls: type[Any], name: str) -> tuple[str, ...]:
    """The choices of the field ``name`` of ``cls`` (for command-line flags)."""
    (f,) = [f for f in dataclasses.fields(cls) if f.name == name]
    choices: tuple[str, ...] = f.metadata["choices"]
    return choices


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one ``dotted.key=value`` to the raw YAML dict; the value is parsed as YAML."""
    key, sep, text = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. training.learning_rate=5e-4")
    *parents, leaf = key.strip().split(".")
    node = raw
    for i, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(parents[: i + 1])}: is a value, not a section")
        node = child
    try:
        node[leaf] = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {assignment}: {yaml_problem(e)}; quote the value to mean it as text") from None


def yaml_problem(error: yaml.YAMLError) -> str:
    """One line for a YAML error (PyYAML's own message spans several, with a caret): where it
    is and what is wrong; a tag such as ``!!python/object`` is named as not allowed."""
    if isinstance(error, yaml.constructor.ConstructorError) and "tag" in str(error.problem):
        problem = f"{str(error.problem).split('constructor for the ')[-1]} is not allowed: give a plain value"
    else:
        problem = str(getattr(error, "problem", None) or error).replace("\n", " ")
    mark = getattr(error, "problem_mark", None)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def to_plain(config: Any) -> dict[str, Any]:
    """Plain data (dicts, lists, str, numbers) of a dataclass, for YAML files and checkpoints."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))
