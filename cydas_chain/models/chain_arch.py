"""The CyDAS chain architecture as data.

A :class:`ChainArch` is the list of MBConv op indices of each of the five searched stages (skips
removed).  It prints compactly, round-trips through JSON, and turns into timm block strings, from
which timm's EfficientNet builder makes the network.  The fixed parts (stem, first stage, head) are
the CyDAS-a/b layout, shared by every architecture of the space.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Mapping, Sequence, Tuple, Union

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


@dataclass(frozen=True)
class ChainLayout:
    """The fixed skeleton around the five searched stages."""

    stem_width: int = 16
    first_stage: str = "ds_r1_k3_s1_e1_c16_se0.25"  # depthwise-separable 3x3, SE
    widths: Tuple[int, ...] = (24, 40, 80, 96, 192)
    strides: Tuple[int, ...] = (2, 2, 2, 1, 2)  # on the first block of each stage
    layers_per_stage: int = 4  # in the search space; a searched stage keeps 1..4 of them
    head_width: int = 960  # 1x1 conv + BN + act after the last stage
    num_features: int = 1280  # conv_head after global pooling

    @property
    def num_stages(self) -> int:
        return len(self.widths)

    def head_block(self) -> str:
        return f"cn_r1_k1_s1_c{self.head_width}"


LAYOUT = ChainLayout()


@dataclass(frozen=True)
class ChainArch:
    """Op indices (into :data:`OPS`) of the blocks of each searched stage."""

    stages: Tuple[Tuple[int, ...], ...]

    def __post_init__(self):
        stages = tuple(tuple(int(i) for i in s) for s in self.stages)
        object.__setattr__(self, "stages", stages)
        if len(stages) != LAYOUT.num_stages:
            raise ArchError(f"a chain architecture has {LAYOUT.num_stages} searched stages, got {len(stages)}")
        for n, stage in enumerate(stages):
            if not 1 <= len(stage) <= LAYOUT.layers_per_stage:
                raise ArchError(f"stage {n} has {len(stage)} blocks; each stage has 1 to "
                                f"{LAYOUT.layers_per_stage}")
            bad = [i for i in stage if not 0 <= i < len(OPS)]
            if bad:
                raise ArchError(f"stage {n} has op index {bad[0]}; valid indices are 0..{len(OPS) - 1}")

    # ---- the path form used by the search: LAYOUT.layers_per_stage choices a stage -------------
    @classmethod
    def from_path(cls, path: Sequence[int]) -> "ChainArch":
        """From one choice per layer (``SKIP`` drops a layer; a stage's first layer cannot skip)."""
        n = LAYOUT.layers_per_stage
        path = [int(i) for i in path]
        if len(path) != n * LAYOUT.num_stages:
            raise ArchError(f"a path has {n * LAYOUT.num_stages} choices, got {len(path)}")
        stages = []
        for s in range(LAYOUT.num_stages):
            layer = path[s * n:(s + 1) * n]
            if layer[0] == SKIP:
                raise ArchError(f"stage {s}: the first layer of a stage cannot be skipped")
            if any(not 0 <= i <= SKIP for i in layer):
                raise ArchError(f"stage {s}: choices must be in 0..{SKIP}, got {layer}")
            stages.append(tuple(i for i in layer if i != SKIP))
        return cls(tuple(stages))

    def to_path(self) -> Tuple[int, ...]:
        """The canonical path: each stage's blocks first, skips padding the rest."""
        n = LAYOUT.layers_per_stage
        return tuple(i for s in self.stages for i in (*s, *(SKIP,) * (n - len(s))))

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
        return {"space": SPACE_NAME, "stages": [list(s) for s in self.stages],
                "path": list(self.to_path()), "block_strings": self.block_strings()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "architecture") -> "ChainArch":
        if not isinstance(d, Mapping):
            raise ArchError(f"{source}: expected a JSON object, got {type(d).__name__}")
        space = d.get("space", SPACE_NAME)
        if space != SPACE_NAME:
            raise ArchError(f"{source} is an architecture of the '{space}' space, not '{SPACE_NAME}'")
        try:
            if "stages" in d:
                return cls(tuple(tuple(s) for s in d["stages"]))
            if "path" in d:
                return cls.from_path(d["path"])
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
    "cydas_b": ChainArch(((3, 4, 2, 0), (5, 2, 4, 0), (4, 3, 2, 2), (1, 3, 0, 1), (2, 4, 4, 2))),
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
