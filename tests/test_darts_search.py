"""The cyclic searcher: L1 schedule, distillation loss, one cyclic iteration, inheritance, resume."""
import math

import numpy as np
import pytest
import torch
from torchvision import transforms as T

from cydas_chain.core.checkpoint import save_checkpoint
from cydas_chain.core.data import TensorImageDataset
from cydas_chain.core.distill import stage_distillation_loss
from cydas_chain.darts.searcher import CyclicSearcher, SearchConfig, l1_weight_at
from cydas_chain.models.darts.genotypes import Genotype, published


def tiny_data(n=32, size=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    labels = (np.arange(n) % classes).tolist()
    tf = T.Compose([T.RandomHorizontalFlip(), T.PILToTensor()])  # uint8, as build_transforms gives; random
    return TensorImageDataset(images, labels, tf, classes=[str(c) for c in range(classes)])


def tiny_config(**kw):
    base = dict(num_classes=3, c=4, layers=3, eval_c=4, eval_layers=3, embed_hidden=8, epochs=3, batch_size=8,
                arch_lr=0.05, w_lr=0.05)
    base.update(kw)
    return SearchConfig(**base)


def test_l1_schedule():
    cfg = SearchConfig(epochs=30)
    assert [l1_weight_at(e, cfg) for e in (0, 10, 19, 20, 29)] == pytest.approx([5.0, 2.5, 0.25, 0.0, 0.0])
    assert l1_weight_at(5, SearchConfig(space="nb201", epochs=30)) == 0.0  # NAS-Bench-201 rules
    assert l1_weight_at(0, SearchConfig(cyclic=False)) == 0.0  # plain DARTS has no such term


def test_distillation_loss_by_hand():
    student = [torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]], requires_grad=True),
               torch.tensor([[0.0, 2.0, 0.0], [1.0, -1.0, 3.0]], requires_grad=True)]
    teacher = [torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], requires_grad=True),
               torch.tensor([[0.0, 0.0, 1.0], [3.0, 0.0, 0.0]], requires_grad=True)]
    T_ = 2.0
    expected = 0.0
    for s, t in zip(student, teacher):
        for sb, tb in zip(s.tolist(), t.tolist()):
            ps = [math.exp(v / T_) for v in sb]
            pt = [math.exp(v / T_) for v in tb]
            ps = [v / sum(ps) for v in ps]
            pt = [v / sum(pt) for v in pt]
            expected += T_ ** 2 * sum(q * math.log(q / p) for p, q in zip(ps, pt)) / len(s)  # batch mean
    loss = stage_distillation_loss(student, teacher, T_)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert student[0].grad is not None and teacher[0].grad is None  # the teacher is detached


def test_one_cyclic_iteration_changes_alpha_ws_and_we():
    data = tiny_data(16)
    s = CyclicSearcher(tiny_config(epochs=1), data, data)
    assert s.steps_per_epoch() == 2
    s.regenerate(s.search_net.genotype())
    alpha0 = [a.detach().clone() for a in s.search_net.arch_parameters()]
    ws0 = s.search_net.stem.stem0[0].weight.detach().clone()
    we0 = {k: v.clone() for k, v in s.eval_net.state_dict().items()}
    metrics = s.run_epoch()
    assert all(math.isfinite(v) for v in metrics.values())
    assert {"loss_search_val", "loss_eval_val", "loss_distill", "loss_search_train", "alpha_skip_l1"} <= set(metrics)
    assert any(not torch.equal(a, b) for a, b in zip(alpha0, s.search_net.arch_parameters()))
    assert not torch.equal(ws0, s.search_net.stem.stem0[0].weight)
    assert s.genotype_history[0]["genotype"] == s.eval_genotype.to_dict()
    changed = [k for k, v in s.eval_net.state_dict().items() if k in we0 and not torch.equal(v, we0[k])]
    assert "stem.stem0.0.weight" in changed and len(changed) > 10
    assert len(s.alpha_history) == 1 and len(s.genotype_history) == 1


def test_first_order_darts_has_no_evaluation_network():
    data = tiny_data(16)
    s = CyclicSearcher(tiny_config(epochs=1, cyclic=False), data, data)
    metrics = s.run_epoch()
    assert s.eval_net is None and "loss_distill" not in metrics and s.search_net.embed is None


def test_regeneration_inherits_shared_edges():
    data = tiny_data(16)
    s = CyclicSearcher(tiny_config(), data, data)
    g1 = published("dartsv2")  # normal node 0: sep_conv_3x3 on input 0
    s.regenerate(g1)
    with torch.no_grad():
        for p in s.eval_net.parameters():
            p.add_(0.5)  # "trained"
    old = {k: v.clone() for k, v in s.eval_net.state_dict().items()}
    normal = list(g1.normal)
    op, inp = normal[0]
    normal[0] = ("sep_conv_5x5", inp)
    g2 = Genotype(normal, g1.normal_concat, g1.reduce, g1.reduce_concat)
    assert s.regenerate(g2) and not s.regenerate(g2)  # unchanged genotype: nothing rebuilt
    new = s.eval_net.state_dict()
    shared = [k for k in new if k in old]
    assert shared and all(torch.equal(new[k], old[k]) for k in shared)
    fresh = [k for k in new if k.startswith(f"cells.0.edges.n0_in{inp}_{normal[0][0]}")]
    assert fresh and all(k in s.last_inheritance["fresh"] for k in fresh)
    # going back to g1 restores the first network's edge from the bank
    s.regenerate(g1)
    k = next(k for k in old if k.startswith(f"cells.0.edges.n0_in{inp}_{op}") and k.endswith("weight"))
    assert torch.equal(s.eval_net.state_dict()[k], old[k])


def test_resume_equivalence(tmp_path):
    data = tiny_data(32)
    cfg = tiny_config(epochs=3, update_every=1, eval_steps=1)
    full = CyclicSearcher(cfg, data, data)
    full.run(checkpoint=tmp_path / "full.pt")

    part = CyclicSearcher(cfg, data, data)
    part.run_epoch()  # the state of a search killed after its first epoch's checkpoint
    save_checkpoint(part.state_dict(), tmp_path / "part.pt")
    del part
    resumed = CyclicSearcher(cfg, data, data)
    resumed.resume(tmp_path / "part.pt")
    assert resumed.epoch == 1
    resumed.run(checkpoint=tmp_path / "part.pt")

    assert len(full.alpha_history) == len(resumed.alpha_history) == 3
    for a, b in zip(full.alpha_history, resumed.alpha_history):
        assert torch.equal(a["normal"], b["normal"]) and torch.equal(a["reduce"], b["reduce"])
    assert full.genotype_history == resumed.genotype_history
    assert len(full.genotype_history) == 3 * full.steps_per_epoch()
    for (k, v), w in zip(full.search_net.state_dict().items(), resumed.search_net.state_dict().values()):
        assert torch.equal(v, w), k


def test_resume_refuses_other_search(tmp_path):
    from cydas_chain.core.errors import CheckpointError
    data = tiny_data(16)
    s = CyclicSearcher(tiny_config(epochs=1), data, data)
    s.run(checkpoint=tmp_path / "c.pt")
    other = CyclicSearcher(tiny_config(epochs=1, c=6), data, data)
    with pytest.raises(CheckpointError, match="different search .c: 4 there, 6 now"):
        other.resume(tmp_path / "c.pt")


def test_nb201_search_iteration():
    data = tiny_data(16)
    s = CyclicSearcher(tiny_config(space="nb201", layers=1, eval_layers=1, epochs=1), data, data)
    alpha0 = s.search_net.alpha.detach().clone()
    metrics = s.run_epoch()
    assert "alpha_skip_l1" not in metrics and "loss_distill" in metrics
    assert not torch.equal(alpha0, s.search_net.alpha)
    assert s.search_net.genotype().arch_str().count("~") == 6


def test_pretrain_epochs_train_ws_only():
    data = tiny_data(16)
    s = CyclicSearcher(tiny_config(epochs=1, pretrain_epochs=1), data, data)
    alpha0 = s.search_net.alpha_normal.detach().clone()
    ws0 = s.search_net.classifier.weight.detach().clone()
    s.run_epoch()
    assert torch.equal(alpha0, s.search_net.alpha_normal) and s.eval_net is None
    assert not torch.equal(ws0, s.search_net.classifier.weight)
    s.run()
    assert s.epoch == 2 and not torch.equal(alpha0, s.search_net.alpha_normal) and s.eval_net is not None


@pytest.mark.parametrize("update_every", [1, 2, 3, 5])
def test_update_every_counts_from_the_first_search_step(update_every):
    """S_U in steps, dividing the 2 pre-training steps or not: the first search step always finds an
    evaluation network, and discretizations fall every S_U steps from there, across epochs."""
    data = tiny_data(16)
    s = CyclicSearcher(tiny_config(epochs=2, pretrain_epochs=1, update_every=update_every, eval_steps=1), data, data)
    n = s.steps_per_epoch()
    assert n == 2
    s.run()
    assert s.epoch == 3 and s.eval_net is not None
    steps = [h["step"] for h in s.genotype_history]
    assert steps == list(range(n, 3 * n, update_every))  # search steps 2, 3 (epoch 2) and 4, 5 (epoch 3)


def _documented_presets():
    """The preset table of docs/darts.md: {field: {preset: value}}."""
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "docs" / "darts.md").read_text()
    table = text[text.index("| setting (`SearchConfig` field) | cifar | imagenet | nb201 |"):]
    rows = {}
    for line in table.splitlines()[2:]:
        if not line.startswith("| `"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = dict(zip(("cifar", "imagenet", "nb201"), map(_doc_value, cells[1:4])))
    return rows


def _doc_value(text):
    import ast
    if "/" in text and "(" not in text:
        a, b = text.split("/")
        return int(a) / int(b)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def test_presets_equal_the_documented_table():
    from cydas_chain.darts.searcher import PRESETS
    documented = _documented_presets()
    for preset in ("cifar", "imagenet", "nb201"):
        assert set(PRESETS[preset]) == set(documented), preset  # every setting documented, nothing else
        for field, value in PRESETS[preset].items():
            assert documented[field][preset] == pytest.approx(value) if isinstance(value, float) \
                else documented[field][preset] == value, (preset, field)
    # the paper's ImageNet values that differed before (issue 12)
    assert PRESETS["imagenet"]["eval_epochs"] == 3 and PRESETS["imagenet"]["arch_weight_decay"] == 3e-5
    assert PRESETS["imagenet"]["batch_size"] == 1024 and PRESETS["imagenet"]["w_lr"] == 0.8


def test_distillation_default_is_the_released_formula():
    """The released code: nn.KLDivLoss()(log_softmax(s/T), softmax(t/T)) * T^2 on the stage logits
    stacked along the batch (CDARTS/lib/models/loss.py, cdarts_controller.forward)."""
    import warnings
    torch.manual_seed(0)
    n, c = 4, 10
    student = [torch.randn(n, c, requires_grad=True) for _ in range(3)]
    teacher = [torch.randn(n, c) for _ in range(3)]
    T_ = 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # KLDivLoss' "mean" warns that its meaning will change
        released = torch.nn.KLDivLoss()(torch.log_softmax(torch.cat(student) / T_, 1),
                                        torch.softmax(torch.cat(teacher) / T_, 1)) * T_ * T_
    cfg = SearchConfig()
    assert cfg.distill_weight == 4.0 and cfg.distill_reduction == "released"
    s = CyclicSearcher.__new__(CyclicSearcher)  # the loss needs only the config
    s.cfg = cfg
    assert s.distillation(student, teacher).item() == pytest.approx(released.item(), rel=1e-6)
    # the per-sample sum over stages (the scale before issue 12) is 3 x C times that
    batchmean = stage_distillation_loss(student, teacher, T_, "batchmean")
    assert batchmean.item() == pytest.approx(3 * c * released.item(), rel=1e-5)
    s.cfg = SearchConfig(distill_reduction="batchmean")
    assert s.distillation(student, teacher).item() == pytest.approx(batchmean.item(), rel=1e-6)


def search_cell_tool():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "tools" / "search_cell.py"
    spec = importlib.util.spec_from_file_location("search_cell_tool", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_total_batch_and_scaled_learning_rate_from_the_tool():
    tool = search_cell_tool()
    build_config, parse_args = tool.build_config, tool.parse_args
    cases = [(["--dataset", "imagenet"], 1024, 0.8), (["--dataset", "imagenet", "--batch-size", "256"], 256, 0.2),
             (["--dataset", "cifar10", "--batch-size", "128"], 128, 0.2),
             (["--dataset", "cifar10", "--batch-size", "128", "--lr", "0.05"], 128, 0.05)]
    for extra, batch, lr in cases:
        cfg, _ = build_config(parse_args(["--data", "somewhere", *extra]), 10)
        assert (cfg.batch_size, cfg.w_lr) == (batch, pytest.approx(lr)), extra
    cfg, preset = build_config(parse_args(["--data", "x", "--dataset", "imagenet"]), 1000)
    assert preset == "imagenet" and cfg.eval_epochs == 3 and cfg.arch_weight_decay == 3e-5


TWO_PROCESS_WORKER = '''
import importlib.util, json, sys
import numpy as np
import torch
sys.path.insert(0, sys.argv[2])
from cydas_chain.core import distributed as d
from cydas_chain.core.checkpoint import save_checkpoint
from cydas_chain.core.data import TensorImageDataset
from cydas_chain.darts.searcher import CyclicSearcher
from torchvision import transforms as T

info = d.init_distributed("cpu")
spec = importlib.util.spec_from_file_location("search_cell_tool", sys.argv[2] + "/tools/search_cell.py")
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)
args = tool.parse_args(["--data", "x", "--dataset", "cifar10", "--batch-size", "8", "--channels", "4",
                        "--layers", "3", "--eval-channels", "4", "--eval-layers", "3", "--epochs", "1"])
cfg, _ = tool.build_config(args, 3)
cfg.embed_hidden = 8
rng = np.random.default_rng(0)
data = TensorImageDataset(rng.integers(0, 256, (32, 8, 8, 3), dtype=np.uint8), (np.arange(32) % 3).tolist(),
                          T.PILToTensor(), classes=["a", "b", "c"])
s = CyclicSearcher(cfg, data, data)
seen = {"arch": [], "weight": [], "eval": [], "lr": []}
for name, key in (("arch_step", "arch"), ("weight_step", "weight"), ("train_eval_step", "eval")):
    def wrap(fn, key=key):
        def step(x, y, *rest):
            seen[key].append(int(x.shape[0]))
            if key == "weight":
                seen["lr"].append(s.w_opt.param_groups[0]["lr"])
            return fn(x, y, *rest)
        return step
    setattr(s, name, wrap(getattr(s, name)))
s.run_epoch()
alpha = torch.cat([a.detach().flatten() for a in s.search_net.arch_parameters()])
w = s.search_net.classifier.weight.detach().flatten()
with open(f"{sys.argv[1]}/rank{info.rank}.json", "w") as f:
    json.dump({"world": info.world_size, "cfg_lr": cfg.w_lr, "batch": cfg.batch_size, "steps": s.steps_per_epoch(),
               "seen": seen, "alpha": alpha.tolist(), "w": w.tolist()}, f)
d.cleanup()
'''


def test_total_batch_over_two_gloo_processes(tmp_path, repo_root):
    """--batch-size 8 under torchrun with 2 processes: each process loads 4 images a step, both step at
    the rate of the total batch (0.1 x 8 / 64), and the averaged gradients keep their weights equal."""
    from conftest import run_two_process_script

    r0, r1 = run_two_process_script(tmp_path, TWO_PROCESS_WORKER, repo_root)
    for r in (r0, r1):
        assert r["world"] == 2 and r["batch"] == 8 and r["steps"] == 32 // 8
        assert set(r["seen"]["arch"] + r["seen"]["weight"] + r["seen"]["eval"]) == {4}
        assert len(r["seen"]["weight"]) == 4
        assert r["cfg_lr"] == pytest.approx(0.1 * 8 / 64)
        assert r["seen"]["lr"] == [pytest.approx(0.1 * 8 / 64)] * 4
    assert r0["alpha"] == pytest.approx(r1["alpha"], abs=1e-6) and r0["w"] == pytest.approx(r1["w"], abs=1e-6)
