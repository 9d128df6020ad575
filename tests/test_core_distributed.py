"""core.distributed under torchrun: two CPU processes (gloo) agree on values and sums."""
import textwrap

from conftest import run_two_process_script

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
    results = run_two_process_script(tmp_path, SCRIPT, repo_root)
    assert [r["world"] for r in results] == [2, 2]
    assert [r["main"] for r in results] == [True, False]
    assert all(r["value"] == {"path": [0, 0, 0]} for r in results)
    assert all(r["total"] == 3.0 for r in results)
