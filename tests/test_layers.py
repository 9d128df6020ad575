"""The package's layers (docs/architecture.md), read from the source: no import is executed.

core -> models -> chain / darts / mm / train -> tools / bench.  A module may import its own package and
the layers below it; the two search spaces never import each other.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "cydas_chain"

# what each subpackage may import of the package (besides itself)
MAY_IMPORT = {
    "core": set(),
    "models": {"core"},
    "chain": {"core", "models"},
    "darts": {"core", "models"},
    "mm": {"core", "models"},
    "train": {"core", "models"},
}
SEARCH_SPACES = ("chain", "darts")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, name: str, is_package: bool):
    """(line, module) for every import in ``source``, relative ones resolved against module ``name``."""
    here = name.split(".") if is_package else name.split(".")[:-1]  # the package the module lives in
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 >= len(here):
                    raise ValueError(f"{name}:{node.lineno}: relative import beyond the top package")
                base = here[:len(here) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            if target == PACKAGE:  # `from cydas_chain import models`, `from .. import models`
                for alias in node.names:
                    yield node.lineno, f"{target}.{alias.name}"
            else:
                yield node.lineno, target


def subpackage(module: str):
    parts = module.split(".")
    return parts[1] if parts[0] == PACKAGE and len(parts) > 1 else None


def violations(root: Path):
    """Every import of the package under ``root`` that breaks the layers, as readable lines."""
    found = []
    for path in sorted((root / PACKAGE).rglob("*.py")):
        name = module_name(path, root)
        layer = subpackage(name)
        if layer is None:  # cydas_chain/__init__.py: the top, may import any layer
            continue
        for line, target in imported_modules(path.read_text(encoding="utf-8"), name, path.name == "__init__.py"):
            other = subpackage(target)
            if other is None or other == layer:
                continue
            if other not in MAY_IMPORT.get(layer, set()):
                found.append(f"{path.relative_to(root)}:{line}: {layer}/ imports {target}")
    return found


def test_every_subpackage_has_a_layer():
    packages = {p.parent.name for p in (ROOT / PACKAGE).glob("*/__init__.py")}
    assert packages == set(MAY_IMPORT), "place a new subpackage in MAY_IMPORT and in docs/architecture.md"


def test_layers_hold():
    assert violations(ROOT) == []


def test_the_rules_of_the_issue():
    for low in ("core", "models"):
        assert not MAY_IMPORT[low] & {"chain", "darts", "mm", "train"}
    assert MAY_IMPORT["core"] == set()
    for space in SEARCH_SPACES:
        assert not MAY_IMPORT[space] & set(SEARCH_SPACES)


def plant(tmp_path: Path, files: dict) -> Path:
    for rel, text in files.items():
        p = tmp_path / PACKAGE / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    for layer in MAY_IMPORT:
        init = tmp_path / PACKAGE / layer / "__init__.py"
        init.parent.mkdir(parents=True, exist_ok=True)
        if not init.exists():
            init.write_text("")
    return tmp_path


@pytest.mark.parametrize("rel, text, expected", [
    ("models/foo.py", "from ..darts import x\n", "models/ imports cydas_chain.darts"),
    ("models/darts/ops.py", "from ...chain.searcher import y\n", "models/ imports cydas_chain.chain.searcher"),
    ("models/bar.py", "def f():\n    from .. import train\n", "models/ imports cydas_chain.train"),
    ("core/data.py", "import cydas_chain.models.cydas\n", "core/ imports cydas_chain.models.cydas"),
    ("core/__init__.py", "from ..mm import backbone\n", "core/ imports cydas_chain.mm"),
    ("chain/searcher.py", "from cydas_chain.darts.genotypes import G\n", "chain/ imports cydas_chain.darts.genotypes"),
    ("darts/searcher.py", "from cydas_chain import chain\n", "darts/ imports cydas_chain.chain"),
])
def test_a_planted_violation_is_found(tmp_path, rel, text, expected):
    found = violations(plant(tmp_path, {rel: text}))
    assert len(found) == 1 and found[0].endswith(expected) and found[0].startswith(f"{PACKAGE}/{rel}:"), found


def test_allowed_imports_pass(tmp_path):
    root = plant(tmp_path, {
        "models/darts/eval_net.py": "from ...core.errors import E\nfrom .ops import OPS\nfrom .. import cydas\n",
        "darts/searcher.py": "from ..models.darts.genotypes import G\nfrom ..core import distill\nfrom . import data\n",
        "darts/__init__.py": "from ..models.darts import Genotype\nfrom .searcher import S\n",
        "chain/cost.py": "import torch\nfrom cydas_chain.models import OPS\n",
        "__init__.py": "from . import models, chain\n",
    })
    assert violations(root) == []


def test_tools_and_benchmarks_edit_no_sys_path():
    """They import the installed package (``pip install -e .``) like any user script."""
    edits = []
    for path in sorted([*(ROOT / "tools").glob("*.py"), *(ROOT / "bench").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name)
                    and node.value.id == "sys"):
                edits.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert edits == []
