"""core.distributed under torchrun: two CPU processes (gloo) agree on values and sums."""
import json
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json, sys, torch
    sys.path.insert(0, sys.argv[2])
    from cydas_chain.core import distributed as d
    info = d.init_distributed("cpu")
    value = d.broadcast_object({"path": [info.rank] * 3})          # rank 0's value everywhere
    total = d.all_reduce_sum(torch.tensor([float(info.rank + 1)]))  # 1 + 2
    with open(f"{sys.argv[1]}/rank{info.rank}.json", "w") as f:
        json.dump({"rank": info.rank, "world": info.world_size, "main": info.is_main,
                   "value": value, "total": total.item()}, f)
    d.cleanup()
""")


def test_torchrun_two_processes(tmp_path, repo_root):
    import subprocess

    script = tmp_path / "worker.py"
    script.write_text(SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(tmp_path), str(repo_root)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in results] == [2, 2]
    assert [r["main"] for r in results] == [True, False]
    assert all(r["value"] == {"path": [0, 0, 0]} for r in results)
    assert all(r["total"] == 3.0 for r in results)
