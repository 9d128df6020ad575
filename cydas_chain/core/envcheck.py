"""What this machine can run: torch, CUDA, the GPUs, mmcv's ops, the data loader's cores.

``tools/env_check.py`` (``./run doctor``) prints :func:`report`; ``./run`` asks :func:`require` on a
machine with GPUs before it writes its install stamp, so a torch that cannot use the GPUs or an mmcv
without CUDA ops stops the install with the fix, not a training run an hour later.  mmcv is optional:
without the OpenMMLab extra its facts say "not installed".
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
from typing import Optional

import torch

from . import gpu

MMCV_VERSION = "2.1.0"
# The commands that build mmcv with CUDA ops (./run does this on a machine with GPUs).
MMCV_CUDA_BUILD = ("pip uninstall -y mmcv && FORCE_CUDA=1 MMCV_WITH_OPS=1 CXX=$PWD/tools/cxx20 "
                   "PYTORCH_NVCC=$PWD/tools/nvcc20 pip install --no-build-isolation --no-cache-dir --no-binary mmcv "
                   f"mmcv=={MMCV_VERSION}")
REQUIREMENTS = ("cuda", "nvcc", "mmcv-cuda-build", "mmcv-cuda-ops")


def _version(dist: str) -> Optional[str]:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_cores() -> int:
    """The cores this process may run on (its affinity), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _nccl_version() -> Optional[str]:
    if torch.version.cuda is None:
        return None
    try:
        v = torch.cuda.nccl.version()
    except Exception:  # noqa: BLE001 - a build without NCCL
        return None
    return ".".join(map(str, v)) if isinstance(v, tuple) else str(v)


def _cudnn_version() -> Optional[str]:
    try:
        v = torch.backends.cudnn.version()
    except Exception:  # noqa: BLE001
        return None
    if not v:
        return None
    major, minor, patch = (v // 10000, v // 100 % 100, v % 100) if v >= 90000 else (v // 1000, v // 100 % 10, v % 100)
    return f"{major}.{minor}.{patch}"


def nvcc_facts() -> dict:
    """The CUDA toolkit that would compile mmcv's CUDA ops: torch's CUDA_HOME and its nvcc's release."""
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    nvcc = shutil.which("nvcc")
    if home is None and nvcc is not None:
        home = os.path.dirname(os.path.dirname(nvcc))  # as torch.utils.cpp_extension finds CUDA_HOME
    if home is None and os.path.isdir("/usr/local/cuda"):
        home = "/usr/local/cuda"
    release = None
    exe = os.path.join(home, "bin", "nvcc") if home else None
    if exe and os.path.isfile(exe):
        try:
            out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout
            m = re.search(r"release (\d+\.\d+)", out)
            release = m.group(1) if m else None
        except (OSError, subprocess.SubprocessError):
            pass
    else:
        exe = None
    return {"cuda_home": home, "nvcc": exe, "nvcc_release": release}


def nvcc_problem(f: dict) -> Optional[str]:
    """Why mmcv's CUDA ops cannot be compiled here (no nvcc, another CUDA major than torch's), with the fix."""
    if torch.version.cuda is None:
        return f"this torch is built without CUDA ({gpu.torch_build()}): there is nothing to compile CUDA ops against"
    major = torch.version.cuda.split(".")[0]
    if f["nvcc"] is None:
        return (f"no CUDA toolkit found (nvcc under $CUDA_HOME, on PATH or in /usr/local/cuda): mmcv's CUDA ops are "
                f"compiled with it; install the CUDA toolkit {major}.x (torch's CUDA is {torch.version.cuda}) and set "
                f"CUDA_HOME to it")
    if f["nvcc_release"] is None or f["nvcc_release"].split(".")[0] != major:
        return (f"{f['nvcc']} is CUDA {f['nvcc_release'] or '(unknown release)'}, but torch is built for CUDA "
                f"{torch.version.cuda}, and torch builds extensions only with the same major version: install the "
                f"CUDA toolkit {major}.x and set CUDA_HOME to it")
    return None


def _boxes(device):
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]], device=device)
    return boxes, torch.tensor([0.9, 0.8, 0.7], device=device)


def _focal_reference(logits, target, gamma=2.0, alpha=0.25):
    """Sigmoid focal loss per element, in plain torch (mmcv's target: class index, C = background)."""
    p = logits.sigmoid()
    t = torch.nn.functional.one_hot(target, logits.shape[1] + 1)[:, :-1].to(logits.dtype)
    return -(alpha * t * (1 - p) ** gamma * torch.log(p) + (1 - alpha) * (1 - t) * p ** gamma * torch.log(1 - p))


def mmcv_op_checks(device: str) -> dict:
    """Run mmcv's ``nms`` (and on CUDA its ``sigmoid_focal_loss``) on ``device``: ``{op: "ok" | problem}``."""
    results = {}
    try:
        from mmcv.ops import nms
        boxes, scores = _boxes(device)
        _, keep = nms(boxes, scores, iou_threshold=0.5)
        results["nms"] = "ok" if keep.tolist() == [0, 2] else f"wrong result {keep.tolist()} (expected [0, 2])"
    except Exception as e:  # noqa: BLE001 - reported, not raised: this is a diagnosis
        results["nms"] = _short(e)
    if device != "cpu":  # mmcv has no CPU focal loss (mmdet then uses its torch version)
        try:
            from mmcv.ops import sigmoid_focal_loss
            logits = torch.tensor([[0.5, -1.0, 2.0], [-0.3, 0.8, -2.0]], device=device)
            target = torch.tensor([1, 3], device=device)  # class 1; background
            loss = sigmoid_focal_loss(logits, target, 2.0, 0.25, None, "none")
            ref = _focal_reference(logits.double(), target).float()
            results["sigmoid_focal_loss"] = ("ok" if torch.allclose(loss, ref, atol=1e-5)
                                             else f"wrong result {loss.tolist()} (expected {ref.tolist()})")
        except Exception as e:  # noqa: BLE001
            results["sigmoid_focal_loss"] = _short(e)
    return results


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def mmcv_facts(run_cuda: bool) -> dict:
    facts = {"mmcv": _version("mmcv"), "mmengine": _version("mmengine"), "mmdet": _version("mmdet"),
             "mmseg": _version("mmsegmentation")}
    if facts["mmcv"] is None:
        return facts
    try:
        from mmcv.ops import get_compiler_version, get_compiling_cuda_version
        cuda = get_compiling_cuda_version()
        facts["mmcv_cuda"] = None if cuda in (None, "", "not available") else cuda
        facts["mmcv_compiler"] = get_compiler_version()
    except Exception as e:  # noqa: BLE001 - mmcv without compiled ops (mmcv-lite) or a broken build
        facts["mmcv_ops_error"] = _short(e)
        return facts
    facts["ops_cpu"] = mmcv_op_checks("cpu")
    if run_cuda:
        facts["ops_cuda"] = mmcv_op_checks("cuda")
    return facts


def collect(mm: bool = True) -> dict:
    """Every fact :func:`report` prints (JSON-ready)."""
    cuda_ok = torch.cuda.is_available()
    listed = gpu.nvidia_smi_gpus()
    facts = {
        "python": platform.python_version(), "platform": platform.platform(),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda, "cudnn": _cudnn_version(),
        "nccl": _nccl_version(), "torchvision": _version("torchvision"), "timm": _version("timm"),
        "nvidia_smi_gpus": listed, "driver": gpu.driver_version() if listed else None,
        "cuda_available": cuda_ok, "cuda_unavailable": gpu.cuda_unavailable_reason(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "devices": [], "cpu_cores": cpu_cores(),
    }
    if cuda_ok:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            facts["devices"].append({"name": p.name, "capability": f"{p.major}.{p.minor}",
                                     "memory_gib": round(p.total_memory / 2 ** 30, 1)})
        facts["bf16"] = bool(torch.cuda.is_bf16_supported())
    else:
        facts["bf16"] = None
    per_gpu = max(1, len(facts["devices"]))
    facts["cores_per_process"] = facts["cpu_cores"] // per_gpu
    # the main process of each rank needs a core too
    facts["loader_workers_per_process"] = max(0, facts["cores_per_process"] - 1)
    if listed and cuda_ok:
        facts.update(nvcc_facts())
    if mm:
        facts.update(mmcv_facts(run_cuda=cuda_ok))
    return facts


def verdicts(f: dict) -> list:
    """``(ok, text)`` pairs: what will and will not work here; ``ok`` None where it does not apply."""
    out = [(True, "CPU runs: every tool with --device cpu, torchrun with --device cpu (gloo)")]
    listed = f["nvidia_smi_gpus"]
    if f["cuda_available"]:
        n = len(f["devices"])
        out.append((True, f"GPU runs: --device auto uses the GPU, torchrun --nproc_per_node {n} (NCCL)"))
        out.append((True if f["bf16"] else None,
                    "bf16 autocast on the GPU" + ("" if f["bf16"] else ": not supported (float16 AMP only)")))
    elif listed:
        out.append((False, f"GPU runs: {f['cuda_unavailable']}"))
    else:
        out.append((None, f"GPU runs: none here, {f['cuda_unavailable']}; --device auto runs one process on the "
                          f"CPU and refuses under torchrun"))
    if "mmcv" in f:
        if f["mmcv"] is None:
            out.append((None, "detection/segmentation (tools/train.py, tools/test.py): mmcv not installed "
                              "(./run test installs the OpenMMLab extra)"))
        elif f["mmcv"] != MMCV_VERSION:
            out.append((False, f"detection/segmentation: mmcv {f['mmcv']} installed, mmdet 3.3.0 needs {MMCV_VERSION}"))
        elif "mmcv_ops_error" in f:
            out.append((False, f"detection/segmentation: mmcv's compiled ops do not load ({f['mmcv_ops_error']}); "
                               f"rebuild it: {MMCV_CUDA_BUILD if listed else 'see README, Installation'}"))
        else:
            bad = {k: v for k, v in f["ops_cpu"].items() if v != "ok"}
            out.append((not bad, "detection/segmentation on the CPU" + (f": mmcv ops fail {bad}" if bad else "")))
            if f["cuda_available"]:
                problem = cuda_ops_problem(f)
                out.append((problem is None, "detection/segmentation on the GPU (mmcv CUDA nms, sigmoid_focal_loss)"
                            + (f": {problem}" if problem else "")))
            elif listed:
                out.append((False, "detection/segmentation on the GPU: CUDA is unavailable (above)"))
    return out


def cuda_ops_problem(f: dict) -> Optional[str]:
    """What is wrong with mmcv's CUDA ops, with the fix; None when they run."""
    if not f.get("mmcv_cuda"):
        return (f"mmcv {f.get('mmcv')} was built without CUDA ops (a CPU-only build, e.g. a wheel from pip's cache); "
                f"rebuild it: {MMCV_CUDA_BUILD}")
    bad = {k: v for k, v in f.get("ops_cuda", {}).items() if v != "ok"}
    if bad:
        return (f"mmcv built for CUDA {f['mmcv_cuda']} fails on this GPU ({bad}); rebuild it with this torch "
                f"(CUDA {f['torch_cuda']}) and the CUDA toolkit of the same major version: {MMCV_CUDA_BUILD}")
    return None


def require(name: str, f: Optional[dict] = None) -> Optional[str]:
    """What stops requirement ``name`` (one of :data:`REQUIREMENTS`) on this machine, with the fix; None when met.

    ``cuda``: torch can use the GPUs; ``nvcc``: a CUDA toolkit of torch's CUDA major version (to compile
    mmcv's CUDA ops); ``mmcv-cuda-build``: mmcv was compiled with CUDA ops;
    ``mmcv-cuda-ops``: mmcv's CUDA nms and sigmoid_focal_loss run and are right."""
    if name not in REQUIREMENTS:
        raise ValueError(f"unknown requirement {name!r} (one of {', '.join(REQUIREMENTS)})")
    if name == "cuda":
        return None if torch.cuda.is_available() else f"torch cannot use the GPUs: {gpu.cuda_unavailable_reason()}"
    if name == "nvcc":
        return nvcc_problem(nvcc_facts())
    f = f if f is not None else {**mmcv_facts(run_cuda=name == "mmcv-cuda-ops" and torch.cuda.is_available()),
                                 "torch_cuda": torch.version.cuda}
    if f.get("mmcv") is None:
        return f"mmcv is not installed: {MMCV_CUDA_BUILD.split(' && ', 1)[1]}"
    if "mmcv_ops_error" in f:
        return f"mmcv's compiled ops do not load ({f['mmcv_ops_error']}): {MMCV_CUDA_BUILD}"
    if name == "mmcv-cuda-build":
        return None if f.get("mmcv_cuda") else cuda_ops_problem(f)
    if not torch.cuda.is_available():
        return f"mmcv's CUDA ops cannot run: torch cannot use the GPUs: {gpu.cuda_unavailable_reason()}"
    return cuda_ops_problem(f)


def _fmt(v) -> str:
    return "-" if v is None else str(v)


def report(f: dict) -> str:
    """The facts and the verdicts as text for a person."""
    lines = ["cydas_chain environment check", ""]
    add = lambda k, v: lines.append(f"  {k:<18} {v}")  # noqa: E731
    add("python", f"{f['python']} ({sys.executable})")
    add("torch", f"{f['torch']}, CUDA {_fmt(f['torch_cuda'])}, cuDNN {_fmt(f['cudnn'])}, NCCL {_fmt(f['nccl'])}")
    add("torchvision / timm", f"{_fmt(f['torchvision'])} / {_fmt(f['timm'])}")
    listed = f["nvidia_smi_gpus"]
    if listed is None:
        add("driver", "no GPU: nvidia-smi is not on PATH")
    else:
        add("driver", f"{_fmt(f['driver'])} (nvidia-smi lists {len(listed)} GPU(s))" if listed
            else "no GPU: nvidia-smi lists none")
    if f["cuda_visible_devices"] is not None:
        add("CUDA_VISIBLE_DEVICES", repr(f["cuda_visible_devices"]))
    if f["devices"]:
        for i, d in enumerate(f["devices"]):
            add(f"GPU {i}", f"{d['name']}, compute capability {d['capability']}, {d['memory_gib']} GiB")
        add("bf16", "supported" if f["bf16"] else "not supported")
    else:
        add("GPUs", f"no GPU visible to torch: {f['cuda_unavailable']}")
        add("bf16", "- (no GPU)")
    if "nvcc" in f:
        add("CUDA toolkit", f"{_fmt(f['nvcc'])} (release {_fmt(f['nvcc_release'])}), CUDA_HOME {_fmt(f['cuda_home'])}")
    per = (f"{f['cores_per_process']} per process with one process per GPU" if f["devices"]
           else "one process (no GPU)")
    add("CPU cores", f"{f['cpu_cores']} for this process; {per} -> at most {f['loader_workers_per_process']} data "
                     f"loader workers per process")
    if "mmcv" in f:
        add("mmcv", "not installed" if f["mmcv"] is None else
            f"{f['mmcv']}, ops compiled with CUDA {_fmt(f.get('mmcv_cuda'))}, {f.get('mmcv_compiler', '-')}")
        add("mmengine/det/seg", f"{_fmt(f['mmengine'])} / {_fmt(f['mmdet'])} / {_fmt(f['mmseg'])}")
        if "ops_cpu" in f:
            add("mmcv ops, CPU", ", ".join(f"{k} {v}" for k, v in f["ops_cpu"].items()))
            add("mmcv ops, GPU", ", ".join(f"{k} {v}" for k, v in f["ops_cuda"].items()) if "ops_cuda" in f
                else "- (no GPU)")
    lines += ["", "what will work here:"]
    mark = {True: "yes", False: "NO ", None: " - "}
    lines += [f"  [{mark[ok]}] {text}" for ok, text in verdicts(f)]
    return "\n".join(lines)


def problems(f: dict) -> list:
    """The verdicts that say something is broken (a GPU that cannot be used, ops that fail)."""
    return [text for ok, text in verdicts(f) if ok is False]
