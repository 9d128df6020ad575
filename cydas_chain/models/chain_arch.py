"""The CyDAS chain architecture as data.

A :class:`ChainArch` is the list of MBConv op indices of each of the five searched stages (skips
removed), with the layer slots of the :class:`ChainSpace` it belongs to.  It prints compactly,
round-trips through JSON, and turns into timm block strings, from
which timm's EfficientNet builder makes the network.  The fixed parts (stem, first stage, head) are
the CyDAS-a/b layout, shared by every architecture of the space.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, List, Mapping, Sequence, Tuple, Union

import numpy as np

from ..core.errors import ArchError

SPACE_NAME = "cydas_chain"


@dataclass(frozen=True)
class MBConvOp:
    kernel: int
    expansion: int

    def block_string(self, width: int, stride: int) -> str:
        """timm block string: inverted residual, SE 0.25 of the expanded width."""
        return f"ir_r1_k{self.kernel}_s{stride}_e{self.expansion}_c{width}_se0.25"

    def __str__(self) -> str:
        return f"MB{self.expansion} {self.kernel}x{self.kernel}"


# Op index -> MBConv op, as in the released CyDAS code.
OPS: Tuple[MBConvOp, ...] = tuple(MBConvOp(k, e) for k in (3, 5, 7) for e in (4, 6))
SKIP = len(OPS)  # the extra choice of the non-first layers of a stage (elastic depth)
NUM_CHOICES = len(OPS) + 1  # columns of the per-layer tables: the ops, then SKIP


@dataclass(frozen=True)
class ChainLayout:
    """The fixed skeleton around the five searched stages."""

    stem_width: int = 16
    first_stage: str = "ds_r1_k3_s1_e1_c16_se0.25"  # depthwise-separable 3x3, SE
    widths: Tuple[int, ...] = (24, 40, 80, 96, 192)
    strides: Tuple[int, ...] = (2, 2, 2, 1, 2)  # on the first block of each stage
    head_width: int = 960  # 1x1 conv + BN + act after the last stage
    num_features: int = 1280  # conv_head after global pooling

    @property
    def num_stages(self) -> int:
        return len(self.widths)

    def head_block(self) -> str:
        return f"cn_r1_k1_s1_c{self.head_width}"


LAYOUT = ChainLayout()

# Layer slots of each searched stage in the supernet released with CyDAS/Cream (``gen_supernet`` in
# Cream's lib/models/structures/supernet.py): four, except five in the 80-channel stage (its last
# block string is ``ir_r2_...``, a repeat of two).  CyDAS-b uses all five there.
DEFAULT_SLOTS: Tuple[int, ...] = (4, 4, 5, 4, 4)


@dataclass(frozen=True)
class ChainSpace:
    """The search space as data: the number of layer slots of each searched stage.

    The first slot of a stage changes width or stride and picks one of the six ops; every other
    slot picks an op or ``SKIP`` (identity), so a stage keeps 1..slots blocks.  A *path* is one
    choice per slot, stage after stage (``sum(slots)`` choices).
    """

    slots: Tuple[int, ...] = DEFAULT_SLOTS

    def __post_init__(self):
        try:
            slots = tuple(int(n) for n in self.slots)
        except (TypeError, ValueError):
            raise ArchError(f"slots must be {LAYOUT.num_stages} positive integers, got {self.slots!r}") from None
        if len(slots) != LAYOUT.num_stages or min(slots) < 1:
            raise ArchError(f"slots must be {LAYOUT.num_stages} positive integers, got {list(slots)}")
        object.__setattr__(self, "slots", slots)

    @property
    def num_layers(self) -> int:
        return sum(self.slots)

    @cached_property
    def layer_stage(self) -> Tuple[int, ...]:
        """The stage of each layer slot."""
        return tuple(s for s, n in enumerate(self.slots) for _ in range(n))

    @cached_property
    def first_layers(self) -> Tuple[int, ...]:
        """The index of the first layer slot of each stage."""
        return tuple(sum(self.slots[:s]) for s in range(len(self.slots)))

    def is_first_layer(self, layer: int) -> bool:
        return layer in self.first_layers

    @cached_property
    def choice_mask(self) -> np.ndarray:
        """``mask[l, c]``: whether choice ``c`` (an op, or ``SKIP`` last) exists at layer ``l``."""
        mask = np.ones((self.num_layers, NUM_CHOICES), dtype=bool)
        mask[list(self.first_layers), SKIP] = False
        mask.flags.writeable = False
        return mask

    def size(self) -> int:
        """Number of paths (the paper's way of counting: a skip may sit in any non-first slot)."""
        return int(np.prod(self.choice_mask.sum(1).astype(object)))

    def num_architectures(self) -> int:
        """Number of distinct networks: paths that differ only in where the skips sit are one."""
        return int(np.prod([sum(len(OPS) ** d for d in range(1, n + 1)) for n in self.slots], dtype=object))

    def layer_channels(self, layer: int) -> Tuple[int, int, int]:
        """(in channels, out channels, stride) of ``layer``'s blocks, whatever the op."""
        s = self.layer_stage[layer]
        out = LAYOUT.widths[s]
        if not self.is_first_layer(layer):
            return out, out, 1
        return (LAYOUT.widths[s - 1] if s else LAYOUT.stem_width), out, LAYOUT.strides[s]

    def block_string(self, layer: int, op: int) -> str:
        """timm block string of op ``op`` (an index into ``OPS``) at ``layer``."""
        _, out, stride = self.layer_channels(layer)
        return OPS[op].block_string(out, stride)

    # ---- paths <-> architectures ----------------------------------------------------------------
    def arch(self, path: Sequence[int]) -> "ChainArch":
        """The architecture of a path (``SKIP`` drops a layer; a stage's first layer cannot skip)."""
        try:
            path = [int(i) for i in path]
        except (TypeError, ValueError):
            raise ArchError(f"a path is a list of {self.num_layers} integers, got {path!r}") from None
        if len(path) != self.num_layers:
            raise ArchError(f"a path of the space with slots {list(self.slots)} has {self.num_layers} "
                            f"choices, got {len(path)}")
        stages = []
        for s, first in enumerate(self.first_layers):
            layer = path[first:first + self.slots[s]]
            if any(not 0 <= i <= SKIP for i in layer):
                raise ArchError(f"stage {s}: choices must be in 0..{SKIP}, got {layer}")
            if layer[0] == SKIP:
                raise ArchError(f"stage {s}: the first layer of a stage cannot be skipped")
            stages.append(tuple(i for i in layer if i != SKIP))
        return ChainArch(tuple(stages), self.slots)

    def path(self, arch: "ChainArch") -> Tuple[int, ...]:
        """The canonical path of ``arch``: each stage's blocks first, skips padding the rest."""
        self.check(arch)
        return tuple(i for s, n in zip(arch.stages, self.slots) for i in (*s, *(SKIP,) * (n - len(s))))

    def check(self, arch: "ChainArch") -> None:
        """Raise ``ArchError`` unless every stage of ``arch`` fits in its slots."""
        for s, (stage, n) in enumerate(zip(arch.stages, self.slots)):
            if len(stage) > n:
                raise ArchError(f"stage {s} has {len(stage)} blocks, more than the {n} slots of the space "
                                f"with slots {list(self.slots)}")

    def canonical(self, path: Sequence[int]) -> Tuple[int, ...]:
        """The canonical path of the network ``path`` builds (skips moved to the end of each stage)."""
        return self.path(self.arch(path))

    def path_str(self, path: Sequence[int]) -> str:
        """Compact form, one group per stage, ``-`` for skip: ``3444|52-0|...``."""
        chars = ["-" if c == SKIP else str(c) for c in path]
        return "|".join("".join(chars[f:f + n]) for f, n in zip(self.first_layers, self.slots))

    def uniform_paths(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` paths drawn uniformly from the whole space, shape (n, num_layers)."""
        return rng.integers(0, self.choice_mask.sum(1), size=(n, self.num_layers))  # valid: 0..count-1

    def describe(self) -> str:
        return (f"slots {','.join(map(str, self.slots))}: {self.size():.3g} paths, "
                f"{self.num_architectures():.3g} distinct networks")


DEFAULT_SPACE = ChainSpace()


@dataclass(frozen=True)
class ChainArch:
    """Op indices (into :data:`OPS`) of the blocks of each searched stage, and the slots of the
    space it belongs to (every stage keeps 1..slots blocks)."""

    stages: Tuple[Tuple[int, ...], ...]
    slots: Tuple[int, ...] = DEFAULT_SLOTS

    def __post_init__(self):
        try:
            stages = tuple(tuple(int(i) for i in s) for s in self.stages)
        except (TypeError, ValueError):
            raise ArchError(f"stages must be lists of op indices, got {self.stages!r}") from None
        object.__setattr__(self, "stages", stages)
        object.__setattr__(self, "slots", ChainSpace(self.slots).slots)
        if len(stages) != LAYOUT.num_stages:
            raise ArchError(f"a chain architecture has {LAYOUT.num_stages} searched stages, got {len(stages)}")
        for n, stage in enumerate(stages):
            if not stage:
                raise ArchError(f"stage {n} has no block; each stage has at least one")
            bad = [i for i in stage if not 0 <= i < len(OPS)]
            if bad:
                raise ArchError(f"stage {n} has op index {bad[0]}; valid indices are 0..{len(OPS) - 1}")
        self.space.check(self)

    @property
    def space(self) -> ChainSpace:
        return ChainSpace(self.slots)

    # ---- the path form used by the search ---------------------------------------------------
    @classmethod
    def from_path(cls, path: Sequence[int], space: ChainSpace = DEFAULT_SPACE) -> "ChainArch":
        return space.arch(path)

    def to_path(self) -> Tuple[int, ...]:
        """The canonical path: each stage's blocks first, skips padding the rest."""
        return self.space.path(self)

    # ---- timm block strings -----------------------------------------------------------------
    def block_strings(self) -> List[List[str]]:
        """Block strings of the searched stages (stride on the first block of each)."""
        return [[OPS[op].block_string(w, st if j == 0 else 1) for j, op in enumerate(stage)]
                for stage, w, st in zip(self.stages, LAYOUT.widths, LAYOUT.strides)]

    def arch_def(self) -> List[List[str]]:
        """The whole network for ``timm.models._efficientnet_builder.decode_arch_def``."""
        return [[LAYOUT.first_stage], *self.block_strings(), [LAYOUT.head_block()]]

    # ---- JSON -----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"space": SPACE_NAME, "slots": list(self.slots), "stages": [list(s) for s in self.stages],
                "path": list(self.to_path()), "block_strings": self.block_strings()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "architecture") -> "ChainArch":
        """From ``to_dict``'s form: ``stages`` (or a ``path``) and the ``slots`` of its space (files
        without ``slots`` predate them and belong to the default space)."""
        if not isinstance(d, Mapping):
            raise ArchError(f"{source}: expected a JSON object, got {type(d).__name__}")
        space = d.get("space", SPACE_NAME)
        if space != SPACE_NAME:
            raise ArchError(f"{source} is an architecture of the '{space}' space, not '{SPACE_NAME}'")
        try:
            slots = d.get("slots", DEFAULT_SLOTS)
            if "stages" in d:
                return cls(tuple(tuple(s) for s in d["stages"]), slots)
            if "path" in d:
                return ChainSpace(slots).arch(d["path"])
        except ArchError as e:
            raise ArchError(f"{source}: {e}") from None
        except (TypeError, ValueError) as e:
            raise ArchError(f"{source}: malformed 'stages'/'path' ({e})") from None
        raise ArchError(f"{source} has neither 'stages' nor 'path'")

    def to_json(self, **extra) -> str:
        return json.dumps({**self.to_dict(), **extra}, indent=2)

    def __str__(self) -> str:
        return " | ".join(",".join(str(i) for i in s) for s in self.stages)

    def describe(self) -> str:
        """Human-readable, one stage a line."""
        lines = [f"stage {n + 1} (c{w}, s{st}): " + ", ".join(str(OPS[i]) for i in s)
                 for n, (s, w, st) in enumerate(zip(self.stages, LAYOUT.widths, LAYOUT.strides))]
        return "\n".join(lines)


# The published architectures (what the released weights were trained with).
PUBLISHED = {
    "cydas_a": ChainArch(((3,), (3, 3), (3, 1, 3), (3, 3, 3, 3), (3, 3, 3))),
    # The official list writes the 80-channel stage [4, 3, 2, 2] over block strings whose last is
    # ``ir_r2_...``: its last op is repeated, five blocks (CDARTS_detection's mobilenetv3.py).
    "cydas_b": ChainArch(((3, 4, 2, 0), (5, 2, 4, 0), (4, 3, 2, 2, 2), (1, 3, 0, 1), (2, 4, 4, 2))),
}

ArchLike = Union[str, os.PathLike, Mapping[str, Any], ChainArch]


def read_arch_file(path: Union[str, os.PathLike]) -> dict:
    """The JSON object of an architecture file, with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise ArchError(f"architecture file not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArchError(f"architecture file {path} is not valid JSON ({e})") from None


def resolve_arch(arch: ArchLike) -> ChainArch:
    """A :class:`ChainArch` from a published name, a JSON file path, a dict or a ChainArch."""
    if isinstance(arch, ChainArch):
        return arch
    if isinstance(arch, Mapping):
        return ChainArch.from_dict(arch)
    if isinstance(arch, (str, os.PathLike)):
        if str(arch) in PUBLISHED:
            return PUBLISHED[str(arch)]
        if isinstance(arch, str) and not arch.endswith(".json") and not Path(arch).exists():
            raise ArchError(f"unknown architecture '{arch}': use one of {', '.join(PUBLISHED)} "
                            f"or the path of an arch.json")
        return ChainArch.from_dict(read_arch_file(arch), source=str(arch))
    raise ArchError(f"cannot make a chain architecture from a {type(arch).__name__}")
