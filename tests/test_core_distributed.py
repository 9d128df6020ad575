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


COLLECTIVES = textwrap.dedent("""
    import json, sys, torch
    sys.path.insert(0, sys.argv[2])
    from cydas_chain.core import distributed as d
    from cydas_chain.core.errors import CydasError
    info = d.init_distributed("cpu")
    # bucketed gradient averaging: mixed dtypes and a bucket smaller than one tensor, against per-tensor sums
    torch.manual_seed(info.rank)
    params = [torch.nn.Parameter(torch.zeros(n, dtype=dt)) for n, dt in ((5, torch.float32), (300, torch.float32),
                                                                         (7, torch.float64), (2, torch.float32))]
    for p in params:
        p.grad = torch.randn_like(p) * (info.rank + 1)
    expected = [d.all_reduce_sum(p.grad.clone()) / 2 for p in params]
    d.average_gradients(params[:3] + [torch.nn.Parameter(torch.zeros(1))] + params[3:], bucket_bytes=256)
    averaged = all(torch.equal(p.grad, e) for p, e in zip(params, expected))
    # agree_on_weights: buffers become rank 0's; parameters that differ stop the run
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    net[1].running_mean.fill_(float(info.rank))
    d.agree_on_weights("weights", net)
    buffers_synced = net[1].running_mean.tolist() == [0.0, 0.0]
    with torch.no_grad():
        net[0].bias[0] += 1e-7 * info.rank  # one parameter off by one ulp-sized step on rank 1
    try:
        d.agree_on_weights("weights", net)
        caught = ""
    except CydasError as e:
        caught = str(e)
    written = d.main_first(lambda: info.rank)  # the main process first; each returns its own value
    with open(f"{sys.argv[1]}/rank{info.rank}.json", "w") as f:
        json.dump({"averaged": averaged, "buffers_synced": buffers_synced, "caught": caught, "first": written}, f)
    d.cleanup()
""")


def test_bucketed_gradients_and_weight_agreement(tmp_path, repo_root):
    results = run_two_process_script(tmp_path, COLLECTIVES, repo_root)
    assert all(r["averaged"] for r in results)  # the few bucketed collectives equal one a tensor
    assert all(r["buffers_synced"] for r in results)
    assert all("the 2 processes hold different weights" in r["caught"] for r in results)
    assert [r["first"] for r in results] == [0, 1]


def test_batch_division_and_accumulation_steps():
    import pytest

    from cydas_chain.core.distributed import accumulation_steps, micro_batch
    from cydas_chain.core.errors import ConfigError

    assert micro_batch(1024, 8, 2) == 64 and micro_batch(64, 1) == 64
    with pytest.raises(ConfigError, match="--batch-size 100 .* not divisible by 8 process.* x 1 .* = 8"):
        micro_batch(100, 8)
    assert accumulation_steps(1024, 8, None, 32) == 4 and accumulation_steps(1024, 8, 2, None) == 2
    assert accumulation_steps(1024, 1, None, None) == 1
    with pytest.raises(ConfigError, match="disagree"):
        accumulation_steps(1024, 8, 2, 32)
    with pytest.raises(ConfigError, match="not a multiple"):
        accumulation_steps(1000, 8, None, 32)


def test_out_of_memory_becomes_one_line_of_advice():
    import pytest
    import torch

    from cydas_chain.core.distributed import out_of_memory_advice
    from cydas_chain.core.errors import ConfigError

    with pytest.raises(ConfigError, match="ran out of memory at 256 images a forward: give --device-batch 128"):
        with out_of_memory_advice(256):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    with out_of_memory_advice(8):  # anything else passes through untouched
        pass
