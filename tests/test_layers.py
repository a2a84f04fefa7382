"""The import layers of the README's module map hold: lower layers never import higher ones."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "seq2seq"

# Everything above the models and data layers.
ABOVE_MODELS_AND_DATA = [
    "seq2seq.search",
    "seq2seq.checkpoint",
    "seq2seq.translate",
    "seq2seq.score",
    "seq2seq.evaluate",
    "seq2seq.train",
    "seq2seq.cli",
    "seq2seq.commands",
]
# module prefix -> seq2seq modules it must not import
FORBIDDEN = {
    "seq2seq.errors": ["seq2seq."],
    "seq2seq.schema": ["seq2seq.config", "seq2seq.runtime", "seq2seq.models", "seq2seq.data", "seq2seq.kernels"],
    "seq2seq.config": ["seq2seq.atomic", "seq2seq.runtime", "seq2seq.models", "seq2seq.data", "seq2seq.kernels"],
    "seq2seq.atomic": ["seq2seq.config", "seq2seq.runtime", "seq2seq.models", "seq2seq.data", "seq2seq.kernels"],
    "seq2seq.runtime": ["seq2seq.models", "seq2seq.data", "seq2seq.kernels", *ABOVE_MODELS_AND_DATA],
    "seq2seq.models": ["seq2seq.data", "seq2seq.kernels", *ABOVE_MODELS_AND_DATA],
    "seq2seq.data": ["seq2seq.models", "seq2seq.kernels", *ABOVE_MODELS_AND_DATA],
    "seq2seq.kernels": ["seq2seq.data", *ABOVE_MODELS_AND_DATA],
    "seq2seq.search": ["seq2seq.data", "seq2seq.checkpoint", "seq2seq.translate", "seq2seq.train", "seq2seq.cli"],
    "seq2seq.checkpoint": ["seq2seq.search", "seq2seq.translate", "seq2seq.train", "seq2seq.cli"],
    "seq2seq.translate": ["seq2seq.train", "seq2seq.cli"],
    "seq2seq.score": ["seq2seq.translate", "seq2seq.train", "seq2seq.cli"],
    "seq2seq.evaluate": ["seq2seq.train", "seq2seq.cli", "seq2seq.models"],
    "seq2seq.train": ["seq2seq.cli", "seq2seq.commands"],
    # the results of the API and of the exported runtime: the standard library only
    "seq2seq.outputs": ["seq2seq."],
    # the long-line rule, shared with the exported runtime: torch-free
    "seq2seq.source_limit": [
        "seq2seq.runtime",
        "seq2seq.models",
        "seq2seq.data",
        "seq2seq.kernels",
        *ABOVE_MODELS_AND_DATA,
    ],
    "seq2seq.lines": ["seq2seq.config", "seq2seq.runtime", "seq2seq.models", "seq2seq.data", *ABOVE_MODELS_AND_DATA],
    "seq2seq.api": ["seq2seq.train", "seq2seq.cli", "seq2seq.commands", "seq2seq.serve"],
    # front ends over the API: they never reach into training or the command line
    "seq2seq.serve": ["seq2seq.train", "seq2seq.cli", "seq2seq.commands", "seq2seq.export"],
    "seq2seq.export": ["seq2seq.train", "seq2seq.cli", "seq2seq.commands", "seq2seq.serve", "seq2seq.api"],
    # experiments on the models: never the data pipeline, kernels, search or the run machinery
    "seq2seq.analysis": [
        "seq2seq.data",
        "seq2seq.kernels",
        "seq2seq.search",
        "seq2seq.checkpoint",
        "seq2seq.train",
        "seq2seq.cli",
        "seq2seq.serve",
        "seq2seq.export",
    ],
}


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_import_layers() -> None:
    violations = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for prefix, forbidden in FORBIDDEN.items():
            if module == prefix or module.startswith(prefix + "."):
                violations += [
                    f"{module} imports {name}"
                    for name in imports(path)
                    if any(name == f or name.startswith(f) for f in forbidden)
                ]
    assert not violations
