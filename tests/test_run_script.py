"""./run's install steps on a GPU machine and with CYDAS_SITE_TORCH=1, as far as they go without a GPU (issue 27).

Each test runs the real ``run`` script against a fake venv (``CYDAS_VENV``): its ``bin/python`` writes every
``python -m pip ...`` call to a log instead of installing and hands everything else to this suite's
python, so the script's decisions (what it installs, with which flags, what it checks and prints) are
seen without installing anything.  An ``nvidia-smi`` stub on PATH makes the machine look like a GPU one.
"""
import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT
from test_gpu_device import DRIVER, expected_reason, write_nvidia_smi

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="a machine whose CUDA works passes these checks")

needs_mmcv = pytest.mark.skipif(importlib.util.find_spec("mmcv") is None, reason="needs the OpenMMLab extra")


def stamp() -> str:
    return hashlib.sha1((ROOT / "setup.py").read_bytes() + (ROOT / "run").read_bytes()).hexdigest()[:12]


def fake_venv(tmp_path, core_installed=True, site_packages=False) -> Path:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    py = venv / "bin" / "python"
    py.write_text(f"""#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
  shift 2
  echo "FORCE_CUDA=${{FORCE_CUDA:-}} CXX=${{CXX:-}} PYTORCH_NVCC=${{PYTORCH_NVCC:-}} pip $*" >> "{venv}/pip.log"
  exit 0
fi
exec "{sys.executable}" "$@"
""")
    py.chmod(0o755)
    (venv / "pyvenv.cfg").write_text(f"include-system-site-packages = {'true' if site_packages else 'false'}\n")
    if core_installed:
        (venv / ".core").write_text(stamp() + "\n")
    return venv


def pip_calls(venv):
    log = venv / "pip.log"
    return log.read_text().splitlines() if log.exists() else []


def clean_path(tmp_path, *first):
    """PATH without any real nvidia-smi, with ``first`` in front."""
    keep = [p for p in os.environ["PATH"].split(os.pathsep) if p and not (Path(p) / "nvidia-smi").exists()]
    return os.pathsep.join([*map(str, first), *keep])


def run_script(venv, *args, path, **env):
    full = {**os.environ, "CYDAS_VENV": str(venv), "PATH": path, **env}
    for var in ("CYDAS_SITE_TORCH", "CYDAS_CPU_ONLY"):
        if var not in env:
            full.pop(var, None)
    return subprocess.run(["bash", str(ROOT / "run"), *args], capture_output=True, text=True, cwd=ROOT,
                          env=full, timeout=300)


def test_gpu_machine_whose_torch_cannot_use_the_gpu_stops_the_install_with_the_fix(tmp_path):
    venv = fake_venv(tmp_path, core_installed=False)
    path = clean_path(tmp_path, write_nvidia_smi(tmp_path / "gpu"))
    proc = run_script(venv, "tools/flops.py", "cydas_a", path=path)
    assert proc.returncode == 1, proc.stderr
    assert f"pip install --disable-pip-version-check -q -e {ROOT}" in pip_calls(venv)[-1]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: cuda: torch cannot use the GPUs: ")
    assert expected_reason() in errors[0]
    if torch.version.cuda:
        assert f"driver {DRIVER}" in errors[0] and "driver is likely too old" in errors[0]
    assert "[run] torch cannot use this machine's GPUs (above)" in proc.stderr
    assert "CYDAS_CPU_ONLY=1 installs for the CPU only" in proc.stderr
    assert not (venv / ".core").exists()  # the next ./run checks again
    # the way out it names: the CPU install, which then runs the command
    proc = run_script(venv, "python", "-c", "print('ran')", path=path, CYDAS_CPU_ONLY="1")
    assert proc.returncode == 0 and proc.stdout.strip() == "ran", proc.stderr
    assert (venv / ".core").read_text().strip() == stamp()


@needs_mmcv
def test_gpu_machine_never_keeps_a_cpu_only_mmcv(tmp_path):
    """torch 'sees' the GPU (a sitecustomize says so); the installed mmcv is this machine's CPU build, as a
    wheel from pip's cache would be: ./run builds it with CUDA, then from source without the cache, then
    stops with the fix because (pip being fake here) the CUDA ops are still missing."""
    venv = fake_venv(tmp_path)
    fake = tmp_path / "fake_cuda"
    fake.mkdir()
    (fake / "sitecustomize.py").write_text("import torch\ntorch.cuda.is_available = lambda: True\n")
    cuda_home = tmp_path / "cuda"
    (cuda_home / "bin").mkdir(parents=True)
    nvcc = cuda_home / "bin" / "nvcc"
    nvcc.write_text(f"#!/bin/sh\necho 'Cuda compilation tools, release {torch.version.cuda or '13.0'}, V0'\n")
    nvcc.chmod(0o755)
    path = clean_path(tmp_path, write_nvidia_smi(tmp_path / "gpu"))
    proc = run_script(venv, "test", "--version", path=path, CUDA_HOME=str(cuda_home),
                      PYTHONPATH=os.pathsep.join([str(fake), str(ROOT)]))
    if torch.version.cuda is None:
        pytest.skip("a CPU-only torch stops at the nvcc check")
    assert proc.returncode == 1, proc.stderr
    calls = pip_calls(venv)
    builds = [c for c in calls if c.endswith("mmcv==2.1.0") and " install " in c]
    assert len(builds) == 2, calls
    for c in builds:
        assert c.startswith(f"FORCE_CUDA=1 CXX={ROOT}/tools/cxx20 PYTORCH_NVCC={ROOT}/tools/nvcc20 pip install ")
    assert "--no-cache-dir" not in builds[0] and "--no-cache-dir --no-binary mmcv" in builds[1]
    assert calls.index(builds[0]) < calls.index("FORCE_CUDA= CXX= PYTORCH_NVCC= pip cache remove mmcv") \
        < calls.index(builds[1])
    assert sum("uninstall -y -q mmcv" in c for c in calls) == 2
    assert "[run] pip installed an mmcv without CUDA ops (a CPU-only wheel from its cache): building it from source" \
        in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("error: mmcv-cuda-build: mmcv 2.1.0 was built without CUDA ops")
    assert "FORCE_CUDA=1 MMCV_WITH_OPS=1" in errors[0]
    assert not (venv / ".mm").exists()


@needs_mmcv
def test_cpu_machine_installs_as_before(tmp_path):
    """No nvidia-smi: the OpenMMLab step is the CPU one (mmcv kept, the extra installed, the CPU nms checked)."""
    venv = fake_venv(tmp_path)
    proc = run_script(venv, "test", "--version", path=clean_path(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "pytest" in (proc.stdout + proc.stderr)
    assert pip_calls(venv) == [f"FORCE_CUDA= CXX= PYTORCH_NVCC= pip install --disable-pip-version-check -q "
                               f"-e {ROOT}[mm,test]"]
    assert "[run] mmcv.ops.nms works" in proc.stdout
    assert (venv / ".mm").read_text().strip() == stamp()


def test_site_torch(tmp_path):
    """CYDAS_SITE_TORCH=1: python3's torch is kept exactly (a pip constraint); refused without one, or when the
    venv cannot see it."""
    no_torch = tmp_path / "no_torch"
    no_torch.mkdir()
    (no_torch / "python3").write_text(f"#!/bin/sh\nexec \"{sys.executable}\" -S \"$@\"\n")  # -S: no site-packages
    (no_torch / "python3").chmod(0o755)
    venv = tmp_path / "new"
    proc = run_script(venv, "python", "-c", "pass", path=clean_path(tmp_path, no_torch), CYDAS_SITE_TORCH="1")
    assert proc.returncode == 1
    assert "[run] CYDAS_SITE_TORCH=1, but python3 (" in proc.stderr and "has no torch to keep" in proc.stderr
    assert not venv.exists()

    with_torch = tmp_path / "with_torch"
    with_torch.mkdir()
    (with_torch / "python3").write_text(f"#!/bin/sh\nexec \"{sys.executable}\" \"$@\"\n")  # this suite's torch
    (with_torch / "python3").chmod(0o755)
    path = clean_path(tmp_path, with_torch)
    isolated = fake_venv(tmp_path / "a", core_installed=False)
    proc = run_script(isolated, "python", "-c", "pass", path=path, CYDAS_SITE_TORCH="1")
    assert proc.returncode == 1 and "was made without the system's packages: remove it" in proc.stderr
    assert pip_calls(isolated) == []

    venv = fake_venv(tmp_path / "b", core_installed=False, site_packages=True)
    proc = run_script(venv, "python", "-c", "print('ran')", path=path, CYDAS_SITE_TORCH="1")
    assert proc.returncode == 0 and proc.stdout.strip() == "ran", proc.stderr
    assert f"[run] keeping the site torch {torch.__version__}" in proc.stderr
    import importlib.metadata as m
    assert (venv / "site-torch.txt").read_text().split() == [f"torch=={m.version('torch')}",
                                                             f"torchvision=={m.version('torchvision')}"]
    assert pip_calls(venv)[-1].endswith(f"pip install --disable-pip-version-check -q -c {venv}/site-torch.txt -e {ROOT}")


def test_nvcc_wrapper_asks_for_cxx20(tmp_path):
    """tools/nvcc20 rewrites mmcv's -std=c++14/17 for torch 2.14's headers and passes the rest unchanged."""
    real = tmp_path / "nvcc"
    real.write_text("#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done\n")
    real.chmod(0o755)
    proc = subprocess.run([str(ROOT / "tools" / "nvcc20"), "-std=c++14", "-c", "a b.cu", "-O3", "-std=c++17"],
                          capture_output=True, text=True, env={**os.environ, "CYDAS_REAL_NVCC": str(real)})
    assert proc.stdout.splitlines() == ["-std=c++20", "-c", "a b.cu", "-O3", "-std=c++20"]
    proc = subprocess.run([str(ROOT / "tools" / "nvcc20"), "--version"], capture_output=True, text=True,
                          env={**os.environ, "CUDA_HOME": str(tmp_path), "CYDAS_REAL_NVCC": ""})
    assert proc.returncode != 0 and str(tmp_path / "bin" / "nvcc") in proc.stderr  # $CUDA_HOME/bin/nvcc, as torch
