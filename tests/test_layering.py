"""The package's shape: no import cycles and no upward imports, read from its own source (every import counts,
those inside functions too: a lazy import is a dependency all the same).

Layers, lowest first: foundations (errors, files, hardware) -> sources -> dataset (cleaning, corpus, blocks) ->
model (load, train, generate, evaluate, the bot) -> the app, the CLI and the benchmark. A module imports from its
own layer or lower ones. A package's __init__ is the package's own module here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "huggingtweets"

LAYERS = [
    {"errors", "paths", "atomic", "environment", "quiet", "posts", "hardware", "distributed", "version", "wrappers"},
    {"sources"},
    {"clean", "dataset", "corpus"},
    {"models", "loss", "compiling", "train", "sampling", "ending", "lengths", "generate", "evaluate", "memorisation", "card", "bot"},
    {"app", "cli", "demo", "bench", "__main__", ""},
]


def modules() -> dict[str, Path]:
    found = {}
    for file in PACKAGE.rglob("*.py"):
        parts = file.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    return found


def imports(name: str, file: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules `name` imports ("" is the package itself)."""
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name.removeprefix("huggingtweets").lstrip(".") for a in node.names if a.name.split(".")[0] == "huggingtweets"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                prefix = ".".join([*base, *([node.module] if node.module else [])])
            elif (node.module or "").split(".")[0] == "huggingtweets":
                prefix = node.module.removeprefix("huggingtweets").lstrip(".")
            else:
                continue
            # `from . import atomic` imports the module atomic; `from .train import X` the module train.
            targets = [f"{prefix}.{a.name}".lstrip(".") if f"{prefix}.{a.name}".lstrip(".") in known else prefix for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, file, known) for name, file in known.items()}


def layer(name: str) -> int:
    top = name.split(".")[0]
    return next(i for i, names in enumerate(LAYERS) if top in names)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return groups


def test_every_module_has_a_layer():
    assert [name for name in modules() if not any(name.split(".")[0] in names for names in LAYERS)] == []


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_no_module_imports_a_higher_layer():
    upward = [f"{m} -> {d}" for m, deps in graph().items() for d in deps if layer(d) > layer(m)]
    assert upward == []


def test_nothing_outside_the_app_imports_the_widget_libraries():
    offenders = []
    for name, file in modules().items():
        if name.split(".")[0] == "app":
            continue
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{name}: {n}" for n in names if n.split(".")[0] in ("ipywidgets", "IPython")]
    assert offenders == []


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from .train import is_peft", {"train"}),
        ("from . import atomic, paths", {"atomic", "paths"}),
        ("from .. import models", {"models"}),
        ("import huggingtweets.bot", {"bot"}),
        ("def f():\n    from .loss import causal_lm_loss", {"loss"}),
        ("import torch\nfrom transformers import Trainer", set()),
    ],
)
def test_the_reader_finds_each_kind_of_import(tmp_path, source, expected):
    # The checks above are only as good as this reader: it must see lazy, relative and absolute imports.
    file = tmp_path / "probe.py"
    file.write_text(source)
    known = {**modules()}
    name = "app.probe" if source.startswith("from ..") else "probe"
    known[name] = file
    assert imports(name, file, known) == expected


def test_a_cycle_is_found_when_there_is_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# Issue 24: readable sizes. Limits a little above "~60" and "~300", so that a line added for a reason does not fail
# the suite, while a function or bench module growing back to twice its size does.
FUNCTION_LINES = 66
BENCH_MODULE_LINES = 330


def test_no_function_of_the_package_is_long():
    long = []
    for name, file in modules().items():
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > FUNCTION_LINES:
                long.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not long, long


def test_each_bench_module_is_small():
    sizes = {f.name: len(f.read_text(encoding="utf-8").splitlines()) for f in (PACKAGE / "bench").glob("*.py")}
    assert len(sizes) >= 10 and not {n: s for n, s in sizes.items() if s > BENCH_MODULE_LINES}, sizes
