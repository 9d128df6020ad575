"""tools/env_check.py: what this machine can run, said plainly (issue 27).  Runs here, on a CPU."""
import importlib.util
import json

import pytest
import torch

from conftest import ROOT, run_tool
from test_gpu_device import DRIVER, expected_reason, write_nvidia_smi
from test_run_script import clean_path

TOOL = ROOT / "tools" / "env_check.py"
pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="written for a machine without a usable GPU")
HAS_MMCV = importlib.util.find_spec("mmcv") is not None


def test_cpu_machine_reports_no_gpu_and_passes(tmp_path):
    proc = run_tool(TOOL, env={"PATH": clean_path(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"torch              {torch.__version__}, CUDA {torch.version.cuda or '-'}" in out
    assert "driver             no GPU: nvidia-smi is not on PATH" in out
    assert "bf16               - (no GPU)" in out
    assert "[yes] CPU runs" in out
    assert "[ - ] GPU runs: none here, no NVIDIA GPU on this machine (nvidia-smi is not on PATH)" in out
    assert "[NO ]" not in out
    if HAS_MMCV:
        assert "mmcv ops, CPU      nms ok" in out and "mmcv ops, GPU      - (no GPU)" in out
        assert "[yes] detection/segmentation on the CPU" in out
    facts = json.loads(run_tool(TOOL, "--json", "--no-mm", env={"PATH": clean_path(tmp_path)}, check=True).stdout)
    assert facts["cuda_available"] is False and facts["nvidia_smi_gpus"] is None and facts["devices"] == []
    assert facts["cpu_cores"] >= 1 and facts["loader_workers_per_process"] == facts["cpu_cores"] - 1
    assert "mmcv" not in facts


def test_gpu_that_torch_cannot_use_is_a_problem(tmp_path):
    path = clean_path(tmp_path, write_nvidia_smi(tmp_path / "gpu", gpus=2))
    proc = run_tool(TOOL, "--no-mm", env={"PATH": path})
    assert proc.returncode == 1
    assert f"driver             {DRIVER} (nvidia-smi lists 2 GPU(s))" in proc.stdout
    no = [ln for ln in proc.stdout.splitlines() if "[NO ]" in ln]
    assert len(no) == 1 and no[0].startswith("  [NO ] GPU runs: nvidia-smi lists 2 GPU(s)") and expected_reason() in no[0]
    proc = run_tool(TOOL, "--require", "cuda", env={"PATH": path})
    assert proc.returncode == 1 and proc.stderr.startswith("error: cuda: torch cannot use the GPUs: nvidia-smi lists 2")


def test_requirements_say_what_is_missing():
    from cydas_chain.core import envcheck

    assert envcheck.require("cuda").startswith("torch cannot use the GPUs: ")
    cpu_build = {"mmcv": "2.1.0", "mmcv_cuda": None, "torch_cuda": "13.0"}
    assert envcheck.require("mmcv-cuda-build", cpu_build).startswith(
        "mmcv 2.1.0 was built without CUDA ops (a CPU-only build, e.g. a wheel from pip's cache); rebuild it: "
        "pip uninstall -y mmcv && FORCE_CUDA=1")
    assert envcheck.require("mmcv-cuda-build", {**cpu_build, "mmcv_cuda": "13.0"}) is None
    assert envcheck.require("mmcv-cuda-build", {"mmcv": None}).startswith("mmcv is not installed: FORCE_CUDA=1 ")
    failing = {"mmcv": "2.1.0", "mmcv_cuda": "12.1", "torch_cuda": "13.0",
               "ops_cuda": {"nms": "ok", "sigmoid_focal_loss": "RuntimeError: no kernel image"}}
    assert "fails on this GPU ({'sigmoid_focal_loss': 'RuntimeError: no kernel image'})" in envcheck.cuda_ops_problem(failing)
    with pytest.raises(ValueError, match="unknown requirement"):
        envcheck.require("gpu")
    if torch.version.cuda:
        major = torch.version.cuda.split(".")[0]
        assert envcheck.nvcc_problem({"nvcc": None, "nvcc_release": None}).startswith("no CUDA toolkit found")
        other = {"nvcc": "/opt/cuda/bin/nvcc", "nvcc_release": f"{int(major) - 1}.8"}
        assert f"install the CUDA toolkit {major}.x" in envcheck.nvcc_problem(other)
        assert envcheck.nvcc_problem({"nvcc": "/opt/cuda/bin/nvcc", "nvcc_release": f"{major}.2"}) is None


def test_focal_loss_reference_matches_the_definition():
    """The reference the CUDA check compares mmcv's sigmoid_focal_loss with (mmcv has no CPU kernel)."""
    from cydas_chain.core.envcheck import _focal_reference

    x = torch.tensor([[0.5, -1.0], [2.0, 0.0]], dtype=torch.float64)
    loss = _focal_reference(x, torch.tensor([1, 2]), gamma=2.0, alpha=0.25)  # class 1; background (2 = C)
    p = torch.sigmoid(x)
    assert loss[0, 1].item() == pytest.approx(-0.25 * (1 - p[0, 1]) ** 2 * torch.log(p[0, 1]))
    assert loss[0, 0].item() == pytest.approx(-0.75 * p[0, 0] ** 2 * torch.log(1 - p[0, 0]))
    assert loss[1, 0].item() == pytest.approx(-0.75 * p[1, 0] ** 2 * torch.log(1 - p[1, 0]))
