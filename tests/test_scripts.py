"""The layout of scripts/: user scripts call the package's public functions and never one
another; developer benchmarks live in scripts/bench/; checkpoints are read and written
through seq2seq.checkpoint only."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "scripts").rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_no_script_imports_another() -> None:
    script_names = {p.stem for p in SCRIPTS}
    assert {"compare_cells", "bleu", "phrase_map", "add_shortlist"} <= script_names
    for path in SCRIPTS:
        shared = {name.split(".")[0] for name in imported_modules(path)} & script_names
        assert not shared, f"{path.relative_to(ROOT)} imports the script(s) {sorted(shared)}"


def test_scripts_leave_the_checkpoint_format_to_the_package() -> None:
    for path in SCRIPTS:
        text = path.read_text(encoding="utf-8")
        for call in ("torch.save(", "torch.load(", "read_payload", '"train_state"'):
            assert call not in text, f"{path.relative_to(ROOT)} uses {call}; use seq2seq.checkpoint"


def test_benchmarks_live_apart_from_user_scripts() -> None:
    bench = {p.name for p in (ROOT / "scripts" / "bench").iterdir()}
    assert {"benchmark.py", "side_by_side.sh", "step_loop.py", "matmul_rates.py"} <= bench
    assert not any((ROOT / "scripts" / name).exists() for name in bench)
