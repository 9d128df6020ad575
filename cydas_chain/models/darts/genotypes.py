"""DARTS-space cell genotypes: the type, its JSON form, the official text form, the published cells.

A genotype lists, for the normal and the reduction cell, two ``(op, input)`` edges per intermediate
node (inputs 0 and 1 are the outputs of the two previous cells, ``k >= 2`` is node ``k - 2``), and
which states are concatenated into the cell output.

Two file forms are read:

* ours, JSON: ``{"space": "darts", "normal": [["sep_conv_3x3", 0], ...], "normal_concat": [2, 3, 4, 5],
  "reduce": [...], "reduce_concat": [...]}``;
* the official text ``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=range(2, 6), ...)``
  written by DARTS (a flat edge list) and by CyDAS (edges grouped per node), alone or as the values
  of the official ``{"0": ..., "1": ..., "2": ...}`` per-stage JSON files.  It is parsed from its
  syntax tree: nothing in a file is ever evaluated.
"""
from __future__ import annotations

import ast
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Tuple, Union

from ...core.errors import ArchError
from .operations import DARTS_PRIMITIVES

__all__ = ["Genotype", "PUBLISHED_NAMES", "published", "resolve_genotype", "parse_genotype_text"]

SPACE_NAME = "darts"
Edge = Tuple[str, int]

# name -> file in cydas_chain/models/darts/published/ (copies of the official files, unchanged)
PUBLISHED_NAMES = {
    "dartsv1": "DARTS first order (Liu et al., ICLR 2019)",
    "dartsv2": "DARTS second order (Liu et al., ICLR 2019)",
    "pdarts": "P-DARTS (Chen et al., ICCV 2019)",
    "pcdarts_cifar": "PC-DARTS searched on CIFAR-10 (Xu et al., ICLR 2020)",
    "pcdarts_imagenet": "PC-DARTS searched on ImageNet (Xu et al., ICLR 2020)",
    "cydas_cifar": "CyDAS searched on CIFAR-10 (Yu et al., TPAMI 2022)",
    "cydas_imagenet": "CyDAS searched on ImageNet (Yu et al., TPAMI 2022)",
}


def _edges(value: Any, field: str) -> Tuple[Edge, ...]:
    """A flat tuple of edges from a flat list of pairs or a list of per-node lists of pairs."""
    if not isinstance(value, (list, tuple)) or not value:
        raise ArchError(f"'{field}' must be a non-empty list of (op, input) pairs")
    if all(isinstance(v, (list, tuple)) and v and isinstance(v[0], (list, tuple)) for v in value):
        value = [e for node in value for e in node]  # CyDAS: grouped per node
    edges = []
    for e in value:
        if not (isinstance(e, (list, tuple)) and len(e) == 2 and isinstance(e[0], str)
                and isinstance(e[1], int) and not isinstance(e[1], bool)):
            raise ArchError(f"'{field}': expected (op, input) pairs, got {e!r}")
        edges.append((e[0], int(e[1])))
    return tuple(edges)


@dataclass(frozen=True)
class Genotype:
    normal: Tuple[Edge, ...]
    normal_concat: Tuple[int, ...]
    reduce: Tuple[Edge, ...]
    reduce_concat: Tuple[int, ...]

    def __post_init__(self):
        for field in ("normal", "reduce"):
            edges = _edges(getattr(self, field), field)
            object.__setattr__(self, field, edges)
            if len(edges) % 2:
                raise ArchError(f"'{field}' has {len(edges)} edges; a DARTS cell has two per node")
            for i, (op, inp) in enumerate(edges):
                if op not in DARTS_PRIMITIVES or op == "none":
                    raise ArchError(f"'{field}': unknown op '{op}' (ops: {', '.join(DARTS_PRIMITIVES[1:])})")
                if not 0 <= inp < i // 2 + 2:
                    raise ArchError(f"'{field}': node {i // 2} cannot take input {inp} "
                                    f"(valid: 0..{i // 2 + 1})")
        for field in ("normal_concat", "reduce_concat"):
            try:
                concat = tuple(int(i) for i in getattr(self, field))
            except (TypeError, ValueError):
                raise ArchError(f"'{field}' must be a list of state indices") from None
            n_states = len(getattr(self, field.split("_")[0])) // 2 + 2
            if not concat or any(not 0 <= i < n_states for i in concat):
                raise ArchError(f"'{field}' = {list(concat)}: indices must be in 0..{n_states - 1}")
            object.__setattr__(self, field, concat)

    @property
    def steps(self) -> int:
        """Number of intermediate nodes."""
        return len(self.normal) // 2

    def cell(self, reduction: bool) -> Tuple[Tuple[Edge, ...], Tuple[int, ...]]:
        return (self.reduce, self.reduce_concat) if reduction else (self.normal, self.normal_concat)

    # ---- JSON ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"space": SPACE_NAME,
                "normal": [list(e) for e in self.normal], "normal_concat": list(self.normal_concat),
                "reduce": [list(e) for e in self.reduce], "reduce_concat": list(self.reduce_concat)}

    def to_json(self, **extra) -> str:
        return json.dumps({**self.to_dict(), **extra}, indent=2)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "genotype") -> "Genotype":
        if not isinstance(d, Mapping):
            raise ArchError(f"{source}: expected a JSON object, got {type(d).__name__}")
        if d and all(str(k).isdigit() and isinstance(v, str) for k, v in d.items()):
            return _from_stage_texts(d, source)  # the official {"0": "Genotype(...)", ...} files
        space = d.get("space", SPACE_NAME)
        if space != SPACE_NAME:
            raise ArchError(f"{source} is a genotype of the '{space}' space, not '{SPACE_NAME}'")
        missing = [k for k in ("normal", "normal_concat", "reduce", "reduce_concat") if k not in d]
        if missing:
            raise ArchError(f"{source}: missing key(s) {', '.join(missing)}")
        try:
            return cls(d["normal"], d["normal_concat"], d["reduce"], d["reduce_concat"])
        except ArchError as e:
            raise ArchError(f"{source}: {e}") from None

    def __str__(self) -> str:
        """The official text form (DARTS' flat edge list)."""
        return (f"Genotype(normal={list(self.normal)}, normal_concat={list(self.normal_concat)}, "
                f"reduce={list(self.reduce)}, reduce_concat={list(self.reduce_concat)})")


# ---- the official text form, parsed from its syntax tree -------------------------------------------
def _literal_or_range(node: ast.AST, field: str):
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range"
            and not node.keywords and 1 <= len(node.args) <= 3):
        return list(range(*(ast.literal_eval(a) for a in node.args)))
    return ast.literal_eval(node)


def parse_genotype_text(text: str, source: str = "genotype") -> Genotype:
    """Parse ``Genotype(normal=..., normal_concat=..., reduce=..., reduce_concat=...)`` without eval."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as e:
        raise ArchError(f"{source}: not a Genotype(...) expression ({e.msg})") from None
    if not (isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.func.id == "Genotype"):
        raise ArchError(f"{source}: expected 'Genotype(normal=..., reduce=...)'")
    fields = {}
    try:
        for kw in tree.keywords:
            fields[kw.arg] = _literal_or_range(kw.value, kw.arg)
    except (ValueError, TypeError, SyntaxError):
        raise ArchError(f"{source}: field '{kw.arg}' is not a literal list (or range)") from None
    fields.setdefault("space", SPACE_NAME)
    return Genotype.from_dict(fields, source)


def _from_stage_texts(d: Mapping[str, str], source: str) -> Genotype:
    genotypes = {k: parse_genotype_text(v, f"{source}[{k!r}]") for k, v in d.items()}
    first = next(iter(genotypes.values()))
    if any(g != first for g in genotypes.values()):
        raise ArchError(f"{source}: per-stage genotypes differ; only one cell per network is supported")
    return first


# ---- lookup ----------------------------------------------------------------------------------
def published(name: str) -> Genotype:
    """A published genotype by name (see :data:`PUBLISHED_NAMES`)."""
    if name not in PUBLISHED_NAMES:
        raise ArchError(f"unknown genotype '{name}': use one of {', '.join(PUBLISHED_NAMES)} "
                        f"or the path of a genotype JSON file")
    text = (resources.files(__package__) / "published" / f"{name}.json").read_text()
    return Genotype.from_dict(json.loads(text), source=f"published genotype '{name}'")


GenotypeLike = Union[str, os.PathLike, Mapping[str, Any], Genotype]


def read_genotype_file(path: Union[str, os.PathLike]) -> Genotype:
    path = Path(path)
    if not path.is_file():
        raise ArchError(f"genotype file not found: {path}")
    text = path.read_text(errors="replace")
    if text.lstrip().startswith("Genotype("):
        return parse_genotype_text(text, source=str(path))
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise ArchError(f"genotype file {path} is not valid JSON ({e})") from None
    return Genotype.from_dict(d, source=str(path))


def resolve_genotype(genotype: GenotypeLike) -> Genotype:
    """A :class:`Genotype` from a published name, a file path, the official text, a dict or a Genotype."""
    if isinstance(genotype, Genotype):
        return genotype
    if isinstance(genotype, Mapping):
        return Genotype.from_dict(genotype)
    if isinstance(genotype, str) and genotype.lstrip().startswith("Genotype("):
        return parse_genotype_text(genotype)
    if isinstance(genotype, (str, os.PathLike)):
        if str(genotype) in PUBLISHED_NAMES:
            return published(str(genotype))
        if isinstance(genotype, str) and not genotype.endswith(".json") and not Path(genotype).exists():
            published(genotype)  # raises the 'unknown genotype' line
        return read_genotype_file(genotype)
    raise ArchError(f"cannot make a genotype from a {type(genotype).__name__}")
