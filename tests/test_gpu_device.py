"""--device auto never falls back to the CPU in silence where GPUs were meant to be used (issue 27).

This machine has no GPU: a stub ``nvidia-smi`` on PATH makes it look like one with a GPU whose driver
(535) is too old for this torch's CUDA, or, for a CPU-only torch, like any GPU machine.
"""
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import ROOT, assert_one_line_error, run_tool, run_two_process_script

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="a machine whose CUDA works picks it")

TOOL = ROOT / "tools" / "search_chain.py"
DRIVER = "535.104.05"


def write_nvidia_smi(folder, gpus=1, driver=DRIVER):
    """An ``nvidia-smi`` that answers ``-L`` and the driver query as the real one does."""
    folder.mkdir(parents=True, exist_ok=True)
    listing = "\n".join(f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i:08d}-0000-0000-0000-000000000000)"
                        for i in range(gpus))
    stub = folder / "nvidia-smi"
    drivers = "\n".join([driver] * gpus)
    stub.write_text(f"#!/bin/sh\ncase \"$*\" in\n  -L) echo '{listing}';;\n  *driver_version*) echo '{drivers}';;\n"
                    f"  *) echo 'NVIDIA-SMI stub';;\nesac\n")  # shell builtins only: PATH may hold nothing else
    stub.chmod(0o755)
    return folder


def expected_reason():
    """What the refusal says is wrong, for the torch this suite runs with."""
    if torch.version.cuda is None:
        return "built without CUDA"
    return f"driver {DRIVER}, but torch {torch.__version__} (CUDA {torch.version.cuda}) cannot use them"


@pytest.fixture
def gpu_path(tmp_path):
    return f"{write_nvidia_smi(tmp_path / 'bin')}{os.pathsep}{os.environ['PATH']}"


def test_stub_answers_like_nvidia_smi(gpu_path, monkeypatch):
    from cydas_chain.core import gpu

    monkeypatch.setenv("PATH", gpu_path)
    assert gpu.nvidia_smi_gpus() == ["GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-00000000-0000-0000-0000-000000000000)"]
    assert gpu.driver_version() == DRIVER


def test_auto_under_torchrun_refuses_in_one_line_and_exit_2(gpu_path, tmp_path):
    """Two CPU processes under torchrun on a machine that 'has' a GPU: each says why and exits 2; no run starts."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(TOOL),
           "--flops", "400", "--out", str(out), "--workers", "0"]  # --device auto: the default
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PATH": gpu_path, "OMP_NUM_THREADS": "1"})
    assert proc.returncode != 0
    assert re.search(r"exitcode\s*:\s*2\b", proc.stderr), proc.stderr[-3000:]  # torchrun's report of the worker
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert errors and len(set(errors)) == 1, proc.stderr[-3000:]  # every process that got that far: the same line
    assert errors[0].startswith("error: --device auto under torchrun needs CUDA, which is unavailable: ")
    assert expected_reason() in errors[0] and errors[0].endswith("or --device cpu to run the processes on the CPU")
    assert not out.exists()


def test_auto_in_one_process_on_a_gpu_machine_refuses(gpu_path, tmp_path):
    proc = run_tool(TOOL, "--flops", "400", "--out", tmp_path / "run", env={"PATH": gpu_path})
    assert_one_line_error(proc, "--device auto: this machine has GPUs, but CUDA is unavailable", expected_reason(),
                          "--device cpu")


def test_device_cpu_runs_under_torchrun_on_a_gpu_machine(gpu_path, tmp_path, repo_root, monkeypatch):
    """With the stub on PATH, --device cpu gives two gloo processes that sum; auto refuses in each of them."""
    monkeypatch.setenv("PATH", gpu_path)
    script = textwrap.dedent("""
        import json, sys, torch
        sys.path.insert(0, sys.argv[2])
        from cydas_chain.core import distributed as d
        from cydas_chain.core.errors import CydasError
        try:
            d.resolve_device("auto")
            refusal = None
        except CydasError as e:
            refusal = str(e)
        info = d.init_distributed("cpu")
        total = d.all_reduce_sum(torch.tensor([float(info.rank + 1)]))
        with open(f"{sys.argv[1]}/rank{info.rank}.json", "w") as f:
            json.dump({"device": str(info.device), "backend": torch.distributed.get_backend(),
                       "total": total.item(), "refusal": refusal}, f)
        d.cleanup()
    """)
    results = run_two_process_script(tmp_path, script, repo_root)
    assert [(r["device"], r["backend"], r["total"]) for r in results] == [("cpu", "gloo", 3.0)] * 2
    assert all(expected_reason() in r["refusal"] for r in results)


def test_why_cuda_is_unavailable(tmp_path, monkeypatch):
    from cydas_chain.core import distributed as d
    from cydas_chain.core import gpu
    from cydas_chain.core.errors import CydasError

    nowhere = tmp_path / "empty"
    nowhere.mkdir()
    monkeypatch.setenv("PATH", str(nowhere))
    for var in ("RANK", "WORLD_SIZE", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)
    # one process, no nvidia-smi: the CPU, as always
    assert d.resolve_device("auto") == torch.device("cpu") and d.resolve_device(None) == torch.device("cpu")
    if torch.version.cuda is not None:
        assert gpu.cuda_unavailable_reason() == "no NVIDIA GPU on this machine (nvidia-smi is not on PATH)"
    # under torchrun: CUDA or nothing, also without nvidia-smi
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(CydasError, match="under torchrun needs CUDA"):
        d.resolve_device("auto")
    assert d.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(CydasError, match="--device cuda asked for, but CUDA is unavailable: "):
        d.resolve_device("cuda")
    # GPUs listed: the driver, or the GPUs hidden from CUDA
    monkeypatch.setenv("PATH", str(write_nvidia_smi(tmp_path / "bin", gpus=2)))
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    assert gpu.cuda_unavailable_reason().startswith(f"nvidia-smi lists 2 GPU(s), driver {DRIVER}, but torch ")
    assert "likely too old for CUDA 13.0 (CUDA 13.x needs driver >= 580.65.06)" in gpu.cuda_unavailable_reason()
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert gpu.cuda_unavailable_reason() == (f"no visible device: CUDA_VISIBLE_DEVICES={hidden!r} hides every GPU "
                                                 f"(nvidia-smi lists 2); unset it or name the GPUs")
    # a CPU-only torch says so first
    monkeypatch.setattr(torch.version, "cuda", None)
    assert gpu.cuda_unavailable_reason().startswith("this torch is built without CUDA (torch ")
    assert "CYDAS_SITE_TORCH=1" in gpu.cuda_unavailable_reason()


def test_the_mm_tools_refuse_gpus_torch_cannot_use(gpu_path, monkeypatch, tmp_path):
    """tools/train.py and tools/test.py let mmengine choose the device: on a machine whose GPUs torch cannot use
    they stop with the reason instead of training on the CPU in silence."""
    pytest.importorskip("mmengine")
    from mmengine.config import Config

    from cydas_chain.core.errors import ConfigError
    from cydas_chain.mm.runner import _common

    monkeypatch.setenv("PATH", gpu_path)
    with pytest.raises(ConfigError, match="this machine has GPUs .* but torch cannot use them: .*CUDA_VISIBLE_DEVICES="):
        _common(Config({}), "retinanet_cydas_b.py", tmp_path / "w", "none")
    monkeypatch.setenv("PATH", os.environ["PATH"].split(os.pathsep, 1)[1])  # no nvidia-smi: a CPU machine
    _common(Config({}), "retinanet_cydas_b.py", tmp_path / "w", "none")  # runs on the CPU, as before
