"""The one training driver (cydas_chain/train/driver.py) and the speed flags (core/speed.py).

Batch semantics: the same total batch gives the same training whether it runs as 1 process, 2 processes
(gloo) or k accumulation steps; measured on a network without batch statistics (GroupNorm), since BN
legitimately sees other batches.  Precision, layout and compilation on the CPU; bad flags.
"""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from cydas_chain.core.errors import ConfigError
from cydas_chain.core.speed import Speed, resolve_speed

WORKER = textwrap.dedent('''
    import json, logging, sys
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torchvision import transforms as T
    sys.path.insert(0, sys.argv[2])
    from cydas_chain.core import distributed as d
    from cydas_chain.core.data import TensorImageDataset
    from cydas_chain.core.seed import seed_everything
    from cydas_chain.core.speed import resolve_speed
    from cydas_chain.train.cells import sgd_cosine
    from cydas_chain.train.driver import Trainer, TrainOptions

    class TinyNet(nn.Module):
        """No batch statistics (GroupNorm); an auxiliary head, as DARTS networks have."""
        def __init__(self):
            super().__init__()
            self.conv, self.norm = nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(2, 8)
            self.head, self.aux = nn.Linear(8, 3), nn.Linear(8, 3)
        def forward_all(self, x):
            h = F.relu(self.norm(self.conv(x))).mean((2, 3))
            return {"logits": self.head(h), "aux": self.aux(h) if self.training else None}
        def forward(self, x):
            return self.forward_all(x)["logits"]

    accum, amp = int(sys.argv[3]), sys.argv[4]
    info = d.init_distributed("cpu")
    rng = np.random.default_rng(0)
    labels = (np.arange(48) % 3).tolist()  # each class a noisy image of its own colour: learnable
    colours = rng.uniform(0, 255, (3, 3))
    images = np.clip(colours[labels][:, None, None] + rng.normal(0, 40, (48, 8, 8, 3)), 0, 255).astype(np.uint8)
    data = TensorImageDataset(images, labels, T.Compose([T.RandomHorizontalFlip(), T.RandomCrop(8, padding=2),
                                                         T.PILToTensor()]))
    test = TensorImageDataset(images, labels, T.PILToTensor())
    seed_everything(0)  # the same network on every rank
    net = TinyNet()
    recipe = dict(lr=0.2, momentum=0.9, weight_decay=5e-4, epochs=3, warmup_epochs=1, label_smoothing=0.1)
    options = TrainOptions(epochs=3, batch_size=8, accum_steps=accum, grad_clip=5.0, aux_weight=0.4, seed=0)
    trainer = Trainer(net, data, {"eval": test}, mean=(0.5,) * 3, std=(0.25,) * 3, make_parts=sgd_cosine(recipe),
                      options=options, speed=resolve_speed(info.device, amp), log=logging.getLogger("t"))
    row = trainer.fit()
    with open(f"{sys.argv[1]}/rank{info.rank}.json", "w") as f:
        json.dump({"world": info.world_size, "step": trainer.step, "row": row,
                   "weights": {k: v.flatten().tolist() for k, v in net.state_dict().items()}}, f)
    d.cleanup()
''')


def run_worker(tmp_path, nproc, accum=1, amp="off"):
    out = tmp_path / f"p{nproc}a{accum}{amp}"
    out.mkdir()
    script = out / "worker.py"
    script.write_text(WORKER)
    from conftest import ROOT
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), str(script),
           str(out), str(ROOT), str(accum), amp]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(nproc)]


def assert_same_weights(a, b, atol):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=atol, rtol=0, err_msg=k)


@pytest.mark.slow
def test_one_process_two_processes_and_accumulation_train_alike(tmp_path):
    """Total batch 8: 1 process x 8, 2 processes x 4 (DDP, the auxiliary head through it, clipping), and 1
    process x 4 accumulation steps of 2 end three epochs (18 updates) with the same weights within float
    summation error; both ranks hold identical weights."""
    one, = run_worker(tmp_path, 1)
    two = run_worker(tmp_path, 2)
    accum, = run_worker(tmp_path, 1, accum=4)
    assert one["step"] == two[0]["step"] == accum["step"] == 3 * 48 // 8
    assert two[0]["weights"] == two[1]["weights"]  # bit for bit: DDP averages the same gradients on both
    assert_same_weights(one["weights"], two[0]["weights"], atol=1e-5)
    assert_same_weights(one["weights"], accum["weights"], atol=1e-5)
    for k in ("train_loss", "eval_loss", "eval_top1"):
        assert one["row"][k] == pytest.approx(two[0]["row"][k], abs=1e-4), k
    # and the runs did learn: the loss well below chance (ln 3 = 1.10, x 1.4 with the aux head's)
    assert one["row"]["train_loss"] < 0.7 * np.log(3) * 1.4 and one["row"]["eval_top1"] > 60


@pytest.mark.slow
def test_bf16_trains_on_the_cpu(tmp_path):
    """--amp bf16 on the CPU: autocast in bf16, no loss scaling; the run learns (eval loss below chance)."""
    bf16, = run_worker(tmp_path, 1, amp="bf16")
    fp32, = run_worker(tmp_path, 1, amp="off")
    assert bf16["row"]["eval_loss"] < np.log(3) - 0.05
    assert bf16["row"]["eval_loss"] == pytest.approx(fp32["row"]["eval_loss"], abs=0.05)  # close, not equal
    assert bf16["weights"] != fp32["weights"]


def test_speed_resolution_and_its_errors(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_speed(cpu).amp is None  # auto: off on the CPU
    assert resolve_speed(cpu, "bf16").amp == torch.bfloat16
    with pytest.raises(ConfigError, match="--amp fp16 needs a CUDA device"):
        resolve_speed(cpu, "fp16")
    with pytest.raises(ConfigError, match="--amp fp16 needs a CUDA device"):
        resolve_speed(cpu, True)  # a run folder of before: amp true meant fp16
    assert resolve_speed(cpu, False).amp is None and resolve_speed(cpu, None).amp is None
    # CUDA devices, as the resolution sees them: auto is bf16 from compute capability 8.0 on, fp16 before
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Tesla V100")
    assert resolve_speed(cuda).amp == torch.float16
    with pytest.raises(ConfigError, match=r"--amp bf16: Tesla V100 \(compute capability 7.0\) has no bfloat16"):
        resolve_speed(cuda, "bf16")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (9, 0))
    assert resolve_speed(cuda).amp == torch.bfloat16
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    with pytest.raises(ConfigError, match="--compile on the CPU needs a C\\+\\+ compiler"):
        resolve_speed(cpu, compile=True)


def test_channels_last_gives_the_logits_of_contiguous():
    import timm

    import cydas_chain  # noqa: F401
    torch.manual_seed(0)
    model = timm.create_model("cydas_a", num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        fast = Speed(torch.device("cpu"), channels_last=True)
        fast.prepare(model)
        assert model.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
        got = model(fast.inputs(x))
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_compile_runs_a_training_step():
    """--compile: torch.compile (inductor, C++ on the CPU) of a small network trains a step and gives the eager
    network's loss."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    speed = resolve_speed(torch.device("cpu"), compile=True)
    compiled = speed.compiled(net)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    loss = nn.functional.cross_entropy(compiled(x), y)
    loss.backward()
    assert net[0].weight.grad is not None
    torch.testing.assert_close(loss, nn.functional.cross_entropy(net(x), y))
