"""Loading never runs someone else's code (issue 23), read from the package's own source.

- every `torch.load(...)` passes `weights_only=True`: without it a checkpoint is unpickled, and a pickle can run
  anything. (The package has none today: bots are safetensors. The rule is for the first one.)
- `trust_remote_code` is never passed as anything but False: True runs a hub repository's Python on this machine.
  No option of ours asks for it, so there is no user-given flag it could come from either.
- `torch.hub.load` is not used: it imports a repository's hubconf.py.

The notebooks' code cells are read too (their shell and magic lines left out). The reader is tested on probes
first, so a rule that can no longer see a violation fails here instead of passing quietly.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "huggingtweets"


def _dotted(node: ast.expr, aliases: dict[str, str]) -> str:
    """`torch.load`, `t.load` after `import torch as t`, `load` after `from torch import load`: 'torch.load'."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ""
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def _aliases(tree: ast.AST) -> dict[str, str]:
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.asname: a.name for a in node.names if a.asname}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {a.asname or a.name: f"{node.module}.{a.name}" for a in node.names}
    return found


def _false(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def violations(source: str, where: str = "<probe>") -> list[str]:
    tree = ast.parse(source)
    aliases = _aliases(tree)
    found = []
    for node in ast.walk(tree):
        at = f"{where}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call):
            name = _dotted(node.func, aliases)
            keywords = {k.arg: k.value for k in node.keywords}
            if name in ("torch.load", "torch.serialization.load"):
                flag = keywords.get("weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    found.append(f"{at}: {name} without weights_only=True")
            if name == "torch.hub.load":
                found.append(f"{at}: torch.hub.load runs a repository's code")
            if "trust_remote_code" in keywords and not _false(keywords["trust_remote_code"]):
                found.append(f"{at}: trust_remote_code passed as {ast.unparse(keywords['trust_remote_code'])}")
        elif isinstance(node, ast.Dict):  # {"trust_remote_code": True}, for a **kwargs
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "trust_remote_code" and not _false(value):
                    found.append(f"{at}: trust_remote_code set to {ast.unparse(value)}")
        elif isinstance(node, ast.Assign):  # kwargs["trust_remote_code"] = True, config.trust_remote_code = True
            for target in node.targets:
                named = (
                    isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant) and target.slice.value == "trust_remote_code"
                ) or (isinstance(target, ast.Attribute) and target.attr == "trust_remote_code")
                if named and not _false(node.value):
                    found.append(f"{at}: trust_remote_code set to {ast.unparse(node.value)}")
    return found


def notebook_code(path: Path) -> str:
    cells = [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
    lines = [line for c in cells for line in "".join(c["source"]).splitlines() + [""]]
    # A shell or magic line becomes `pass` at its indentation: it may be all an `if` holds.
    return "\n".join(line[: len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("!", "%")) else line for line in lines)


BAD = {
    "torch-load-bare": "import torch\ntorch.load('x.pt')",
    "torch-load-false": "import torch\ntorch.load('x.pt', weights_only=False)",
    "torch-load-variable": "import torch\nsafe = True\ntorch.load('x.pt', weights_only=safe)",
    "torch-load-kwargs": "import torch\ntorch.load('x.pt', **options)",
    "torch-load-alias": "import torch as t\nt.load('x.pt', map_location='cpu')",
    "torch-load-imported": "from torch import load\nload('x.pt')",
    "torch-serialization": "import torch\ntorch.serialization.load('x.pt')",
    "torch-hub": "import torch\ntorch.hub.load('someone/repo', 'model')",
    "remote-code-true": "AutoModel.from_pretrained('x', trust_remote_code=True)",
    "remote-code-variable": "AutoModel.from_pretrained('x', trust_remote_code=flag)",
    "remote-code-dict": "kwargs = {'trust_remote_code': True}\nAutoModel.from_pretrained('x', **kwargs)",
    "remote-code-dict-call": "AutoTokenizer.from_pretrained('x', **dict(trust_remote_code=True))",
    "remote-code-subscript": "kwargs['trust_remote_code'] = True",
    "remote-code-attribute": "config.trust_remote_code = 1",
    "nested-in-function": "def f():\n    import torch\n    return torch.load(path)",
}
GOOD = {
    "torch-load-safe": "import torch\ntorch.load('x.pt', weights_only=True, map_location='cpu')",
    "other-load": "import json\njson.load(f)\nsafetensors.torch.load_file('x')\nmodel.load_state_dict(state)",
    "remote-code-false": "AutoModel.from_pretrained('x', trust_remote_code=False)",
    "no-flags": "AutoModel.from_pretrained('x')",
}


@pytest.mark.parametrize("source", BAD.values(), ids=BAD.keys())
def test_the_reader_sees_each_kind_of_violation(source):
    assert len(violations(source)) == 1, violations(source)


@pytest.mark.parametrize("source", GOOD.values(), ids=GOOD.keys())
def test_the_reader_lets_safe_code_through(source):
    assert violations(source) == []


def test_notebook_cells_are_read_without_their_shell_lines(tmp_path):
    cells = [{"cell_type": "code", "source": ["!pip install x\n", "%time 1\n", "import torch\n", "torch.load('x.pt')\n"]},
             {"cell_type": "markdown", "source": ["torch.load('not code')"]}]
    (tmp_path / "probe.ipynb").write_text(json.dumps({"cells": cells}), encoding="utf-8")
    assert len(violations(notebook_code(tmp_path / "probe.ipynb"))) == 1


def sources() -> dict[str, str]:
    found = {str(f.relative_to(ROOT)): f.read_text(encoding="utf-8") for f in sorted(PACKAGE.rglob("*.py"))}
    found |= {str(f.relative_to(ROOT)): notebook_code(f) for f in sorted([*PACKAGE.rglob("*.ipynb"), *(ROOT / "notebooks").glob("*.ipynb")])}
    return found


def test_nothing_the_package_loads_can_run_code():
    read = sources()
    assert len([name for name in read if name.endswith(".py")]) > 30  # the package itself, not an empty glob
    assert {"huggingtweets/bot.py", "huggingtweets/models.py", "huggingtweets/train.py"} <= set(read)
    found = [v for name, text in read.items() for v in violations(text, name)]
    assert found == []
