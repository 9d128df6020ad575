import os
import sys
from pathlib import Path

import pytest

# One math thread per process: the suite runs as `pytest -n 2` on 2 cores, and tools started by the
# tests are further processes; more threads only oversubscribe the cores (measured: 3-10x slower).
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def one_math_thread():
    """Also when torch was imported before this file set the variable."""
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The tools the tests start (`python tools/x.py`, which edit no sys.path) import this checkout's package
# too, not another installed copy of it.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)

# Tests never write to the user's cache: the embedded dataset and any other cache go to a tmp dir.
os.environ.setdefault("XDG_CACHE_HOME", str(Path(os.environ.get("TMPDIR", "/tmp")) / f"cydas-test-cache-{os.getpid()}"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


def run_tool(*args, cwd=ROOT, timeout=600, env=None, check=False):
    """Run ``python tools/<script> args...`` as a user would; return the CompletedProcess."""
    import subprocess

    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def assert_one_line_error(proc, *fragments):
    """A tool failed the way bad input should fail: exit 2 and a single 'error: ...' line."""
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1, f"expected one 'error:' line, got:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    for frag in fragments:
        assert frag in errors[0], f"{frag!r} not in {errors[0]!r}"


def run_two_process_script(tmp_path, source: str, repo_root) -> list:
    """Run ``source`` (argv: OUT_DIR, REPO_ROOT) under ``torchrun --standalone`` with 2 CPU processes; each
    writes ``OUT_DIR/rank<r>.json``.  Returns the two ranks' JSON objects."""
    import json
    import subprocess

    script = tmp_path / "worker.py"
    script.write_text(source)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(tmp_path), str(repo_root)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]


def kill_at_first_checkpoint(args, ckpt, cwd=ROOT, env=None, timeout=300, until=None):
    """Start ``python args...`` and SIGKILL it (its whole process group: torchrun's workers too) as soon as
    checkpoint ``ckpt`` is on disk (and, given ``until``, holds a state for which ``until(state)`` is true): a
    real interruption at a checkpoint boundary, no switch in the code.  Asserts that the process was killed,
    not finished; returns the checkpoint."""
    import signal
    import subprocess
    import tempfile
    import time

    import torch

    def reached() -> bool:
        if not Path(ckpt).exists():
            return False
        if until is None:
            return True
        try:  # the atomic write leaves a whole file, or the previous one
            return bool(until(torch.load(ckpt, map_location="cpu", weights_only=True)))
        except (OSError, RuntimeError, EOFError):
            return False

    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: a full pipe would block the tool
        proc = subprocess.Popen([sys.executable, *map(str, args)], cwd=cwd, stdout=subprocess.DEVNULL, stderr=err,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not reached() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01 if until is None else 0.05)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        err.seek(0)
        assert proc.returncode == -signal.SIGKILL, f"exit {proc.returncode}, not killed:\n{err.read()[-3000:]}"
    return torch.load(ckpt, map_location="cpu", weights_only=True)  # the atomic write left a whole file
