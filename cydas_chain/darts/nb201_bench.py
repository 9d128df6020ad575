"""What a NAS-Bench-201 cell is worth: its trained accuracies, read from the benchmark file a user has.

NAS-Bench-201 (Dong & Yang, ICLR 2020) trained all 15,625 cells of its space; its API file
(``NAS-Bench-201-v1_0-e61699.pth`` / ``NAS-Bench-201-v1_1-096897.pth``, read by the ``nas-bench-201``
package) and the NATS-Bench topology file (``NATS-tss-v1_0-3ffb9-simple``, read by ``nats_bench``)
hold the results.  Neither can be downloaded by this suite; the user passes the file they have.

A cell is named by the benchmark's own string, ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``
(:meth:`NB201Genotype.arch_str`).  The accuracies reported are the benchmark's usual ones (the
200-epoch schedule, mean over the trained seeds, after the last epoch), as the CyDAS paper's Table 2
reports them:

* CIFAR-10: valid = ``cifar10-valid`` / ``x-valid``, test = ``cifar10`` / ``ori-test``;
* CIFAR-100 and ImageNet16-120: valid = ``x-valid``, test = ``x-test``.

The benchmark's own package is used when it is installed (``pip install .[nb201]``); otherwise the
``.pth`` file is read here, in the package's format (``meta_archs``, ``arch2infos[index]['full']`` =
``ArchResults.state_dict()`` whose ``all_results[(dataset, seed)]`` are ``ResultsCount`` state dicts).
The ``.pth`` file is read by the one strict loader (``core.checkpoint.load_checkpoint``,
``torch.load(weights_only=True)``): nothing in it is executed.  The NATS-Bench file is a plain pickle
only ``nats_bench`` reads; it needs that package.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

from ..core.errors import CheckpointError, DataError, first_line
from ..models.darts.nb201 import NB201Genotype

__all__ = ["NB201Bench", "BENCH_DATASETS", "format_accuracies"]

HP = "200"  # the benchmark's full training schedule ('full' in the NAS-Bench-201 file)
# dataset -> {"valid": (benchmark dataset key, set name), "test": (...)}
BENCH_DATASETS: Dict[str, Dict[str, tuple]] = {
    "cifar10": {"valid": ("cifar10-valid", "x-valid"), "test": ("cifar10", "ori-test")},
    "cifar100": {"valid": ("cifar100", "x-valid"), "test": ("cifar100", "x-test")},
    "ImageNet16-120": {"valid": ("ImageNet16-120", "x-valid"), "test": ("ImageNet16-120", "x-test")},
}


def _load_pth(path: Path) -> Dict[str, Any]:
    import torch

    from ..core.checkpoint import load_checkpoint, numpy_safe_globals
    # numpy scalars and dtypes, which benchmark files written by older code may hold.  Only what is not
    # allowed already: leaving the context removes what it added, and would take away the numpy types
    # that importing cydas_chain.mm allow-lists for the whole process.
    allowed = torch.serialization.get_safe_globals()
    extra = [g for g in numpy_safe_globals() if g not in allowed]
    try:
        with torch.serialization.safe_globals(extra):
            data = load_checkpoint(path)  # the strict (weights-only) loader
    except CheckpointError as e:  # any unreadable file gets the same one line
        reason = str(e).removeprefix(f"cannot read checkpoint {path}: ")
        raise DataError(f"cannot read NAS-Bench-201 file {path}: {reason}") from None
    if not {"meta_archs", "arch2infos"} <= set(data):
        raise DataError(f"{path} is not a NAS-Bench-201 API file (no 'meta_archs' / 'arch2infos')")
    return data


class NB201Bench:
    """The benchmark's results of a file; :meth:`lookup` gives a cell's accuracies."""

    def __init__(self, path: Union[str, os.PathLike], use_package: bool = True):
        self.path, self._found = Path(path), {}
        if not self.path.exists():
            raise DataError(f"NAS-Bench-201 file not found: {self.path}")
        self.api = None
        self.source = "read here"
        if self.path.is_dir() or self.path.name.endswith(".pickle.pbz2"):
            self._open_nats()
            return
        data = _load_pth(self.path)
        if use_package:
            try:
                from nas_201_api import NASBench201API
            except ImportError:
                NASBench201API = None
            if NASBench201API is not None:
                try:
                    self.api = NASBench201API(data, verbose=False)
                except Exception as e:  # noqa: BLE001
                    raise DataError(f"nas_201_api cannot read {self.path}: {first_line(e)}") from None
                self.source = "nas_201_api"
                return
        self._data = data
        self._index = {arch: i for i, arch in enumerate(data["meta_archs"])}

    def _open_nats(self) -> None:
        try:
            import nats_bench
        except ImportError:
            raise DataError(f"{self.path} is a NATS-Bench file: install the benchmark's package "
                            f"(pip install nats_bench==1.8, or this suite's [nb201] extra)") from None
        try:
            self.api = nats_bench.create(str(self.path), "tss", fast_mode=self.path.is_dir(), verbose=False)
        except Exception as e:  # noqa: BLE001
            raise DataError(f"nats_bench cannot read {self.path}: {first_line(e)}") from None
        self.source = "nats_bench"

    def __len__(self) -> int:
        return len(self.api) if self.api is not None else len(self._data["meta_archs"])

    def index(self, arch: Union[str, NB201Genotype]) -> int:
        arch_str = arch.arch_str() if isinstance(arch, NB201Genotype) else NB201Genotype.from_arch_str(arch).arch_str()
        idx = self.api.query_index_by_arch(arch_str) if self.api is not None else self._index.get(arch_str, -1)
        if idx is None or idx < 0:
            raise DataError(f"cell {arch_str} is not in {self.path.name}")
        return int(idx)

    def found_or_none(self, arch_str: str) -> Optional[Dict[str, Any]]:
        """:meth:`lookup`, cached (a search revisits cells); None with a warning for a cell the file
        lacks (a partial file must not stop a search)."""
        if arch_str not in self._found:
            try:
                self._found[arch_str] = self.lookup(arch_str)
            except DataError as e:
                print(f"warning: {e}", file=sys.stderr)
                self._found[arch_str] = None
        return self._found[arch_str]

    def lookup(self, arch: Union[str, NB201Genotype]) -> Dict[str, Any]:
        """``{"index", "arch_str", "cifar10": {"valid", "test"}, "cifar100": ..., "ImageNet16-120": ...}``
        in percent; a value the file lacks is None."""
        idx = self.index(arch)
        arch_str = arch.arch_str() if isinstance(arch, NB201Genotype) else NB201Genotype.from_arch_str(arch).arch_str()
        out: Dict[str, Any] = {"index": idx, "arch_str": arch_str}
        info = self.api.query_meta_info_by_index(idx, hp=HP) if self.api is not None else None
        for name, sets in BENCH_DATASETS.items():
            out[name] = {kind: (self._package_metric(info, ds, sn) if info is not None else
                                self._own_metric(idx, ds, sn)) for kind, (ds, sn) in sets.items()}
        return out

    @staticmethod
    def _package_metric(info, dataset: str, setname: str) -> Optional[float]:
        if dataset not in info.get_dataset_names():
            return None
        return float(info.get_metrics(dataset, setname)["accuracy"])

    def _own_metric(self, idx: int, dataset: str, setname: str) -> Optional[float]:
        """``ArchResults.get_metrics(dataset, setname)['accuracy']`` of the package, on the raw dict."""
        infos = self._data["arch2infos"].get(idx)
        if infos is None:
            raise DataError(f"{self.path.name} has no results for cell {idx}")
        full = infos["full"]
        seeds = full["dataset_seed"].get(dataset)
        if not seeds:
            return None
        accs = []
        for seed in seeds:
            result = full["all_results"][(dataset, seed)]
            key = f"{setname}@{int(result['epochs']) - 1}"
            if key not in result["eval_acc1es"]:
                return None
            accs.append(float(result["eval_acc1es"][key]))
        return sum(accs) / len(accs)


def format_accuracies(result: Mapping[str, Any], which: str = "test") -> str:
    """``cifar10 93.76 | cifar100 70.86 | ImageNet16-120 44.53`` (``which`` accuracy, percent)."""
    parts = []
    for name in BENCH_DATASETS:
        v = result[name][which]
        parts.append(f"{name} {'n/a' if v is None else f'{v:.2f}'}")
    return " | ".join(parts)
