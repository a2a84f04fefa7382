"""The documentation agrees with the code: the configuration reference is the generated one
and lists every key, the README stays short, links between documents resolve, and code
comments carry no measured numbers (those live in docs/benchmarks.md)."""

from __future__ import annotations

import dataclasses
import io
import re
import subprocess
import sys
import tokenize
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from seq2seq import config, config_doc

ROOT = Path(__file__).resolve().parents[1]


def config_keys(cls: type[Any] = config.RunConfig, prefix: str = "") -> Iterator[tuple[str, type[Any], Any]]:
    """(dotted key, owning dataclass, field) for every key of a run config, sections included."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        if prefix:
            yield key, cls, f
        options = (hints[f.name], *typing.get_args(hints[f.name]))
        inner = [a for a in options if isinstance(a, type) and dataclasses.is_dataclass(a)]
        if inner:
            yield from config_keys(inner[0], key)


def reference_rows(text: str) -> dict[str, list[str]]:
    """The table rows of the reference: dotted key -> the cells after it."""
    rows = {}
    for line in text.splitlines():
        match = re.match(r"\| `([\w.]+)` \|(.*)\|$", line)
        if match:
            rows[match[1]] = [cell.strip() for cell in re.split(r"(?<!\\)\|", match[2])]
    return rows


def test_configuration_reference_is_current() -> None:
    written = (ROOT / "docs/configuration.md").read_text(encoding="utf-8")
    assert written == config_doc.render(), f"docs/configuration.md is stale: run {config_doc.COMMAND}"


def test_reference_lists_every_key_with_its_default_and_valid_values() -> None:
    rows = reference_rows(config_doc.render())
    keys = {key: (cls, f) for key, cls, f in config_keys()}
    assert set(rows) == set(keys)
    for key, (_, f) in keys.items():
        _, default, valid, _ = rows[key]
        if not dataclasses.is_dataclass(f.default) and f.default is not None:
            value = yaml.safe_load(default.strip("`"))
            expected = list(f.default) if isinstance(f.default, tuple) else f.default
            assert value == expected, key
        for choice in f.metadata.get("choices", ()):
            assert f"`{choice}`" in valid, key
        for bound in (f.metadata.get("low"), f.metadata.get("high")):
            if bound is not None:
                assert yaml.safe_load(str(bound)) in [yaml.safe_load(x) for x in re.findall(r"[-\d.e]+", valid)], key


def test_reference_carries_the_comments_of_config_py() -> None:
    """Each trailing ``# comment`` of a field in seq2seq/config.py shows up in that key's row."""
    prefixes: dict[str, list[str]] = {}
    for key, cls, _ in config_keys():
        prefixes.setdefault(cls.__name__, []).append(key)
    rows = reference_rows(config_doc.render())
    source = Path(config.__file__).read_text(encoding="utf-8")
    owner, checked = "", 0
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME and tok.string == "class" and tok.start[1] == 0:
            owner = tok.line.split()[1].split("(")[0].rstrip(":")
        field = re.match(r"\s+(\w+): [^=]+=.*#", tok.line)
        if tok.type == tokenize.COMMENT and field and tok.line[: tok.start[1]].strip():
            comment = tok.string.lstrip("#").strip().replace("|", "\\|")
            for key in prefixes.get(owner, []):
                if key.rsplit(".", 1)[1] == field[1]:
                    assert comment in rows[key][3], key
                    checked += 1
    assert checked > 10


def test_check_fails_on_a_stale_file_and_write_fixes_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "configuration.md"
    assert config_doc.main(["--check", "--path", str(path)]) == 1  # missing
    path.write_text("# stale\n", encoding="utf-8")
    assert config_doc.main(["--check", "--path", str(path)]) == 1
    assert config_doc.COMMAND in capsys.readouterr().err
    assert config_doc.main(["--write", "--path", str(path)]) == 0
    assert config_doc.main(["--check", "--path", str(path)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["configuration.md"]  # no temporary file left


def test_config_doc_does_not_import_torch() -> None:
    code = "import sys, seq2seq.config_doc; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_readme_is_short() -> None:
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) < 150


def anchors(markdown: str) -> set[str]:
    """The fragment names of a Markdown file's headings, as GitHub makes them."""
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL)  # not comments in code
    headings = re.findall(r"^#+ (.+)$", prose, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("doc", ["README.md", *(str(p.relative_to(ROOT)) for p in sorted(ROOT.glob("docs/*.md")))])
def test_relative_links_resolve(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, fragment = target.partition("#")
        file = (ROOT / doc).parent / path if path else ROOT / doc
        assert file.exists(), f"{doc}: broken link {target}"
        if fragment and file.suffix == ".md":
            assert fragment in anchors(file.read_text(encoding="utf-8")), f"{doc}: no heading for {target}"


# A number with a unit of time, memory, speed or a ratio: what a measurement leaves behind.
MEASURED = re.compile(
    r"(?<![\w(])~?\d+(\.\d+)?([-–]\d+(\.\d+)?)? ?(×|x\b|ms\b|µs\b|s\b|seconds|minutes|GB\b|MB\b|MiB|GiB|%"
    r"|tokens/s|sentences/s|GFLOP/s)"
)


def comments_and_docstrings(path: Path) -> Iterator[tuple[int, str]]:
    source = path.read_text(encoding="utf-8")
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        docstring = tok.type == tokenize.STRING and tok.string.lstrip("rbuf").startswith(('"""', "'''"))
        if tok.type == tokenize.COMMENT or docstring:
            yield tok.start[0], tok.string


def test_code_comments_carry_no_measured_numbers() -> None:
    """Figures belong in docs/benchmarks.md with their date, commit, CPU and command;
    comments say why and name the benchmark script."""
    found = [
        f"{path.relative_to(ROOT)}:{line}: {match[0]}"
        for path in sorted([*ROOT.glob("seq2seq/**/*.py"), *ROOT.glob("scripts/**/*.py"), *ROOT.glob("tests/*.py")])
        for line, text in comments_and_docstrings(path)
        for match in MEASURED.finditer(text)
    ]
    assert not found, "\n".join(found)
