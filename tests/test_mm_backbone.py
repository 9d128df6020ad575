"""The CyDAS backbone contract for MMDetection / MMSegmentation (in-process, tiny inputs)."""
import subprocess
import sys

import numpy as np
import pytest
import timm
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from conftest import ROOT

mm = pytest.importorskip("cydas_chain.mm")
from cydas_chain.core.errors import CheckpointError  # noqa: E402
from cydas_chain.mm.backbone import CyDAS  # noqa: E402
from cydas_chain.models import ChainArch  # noqa: E402

pytestmark = [pytest.mark.mm, pytest.mark.filterwarnings("ignore:pkg_resources is deprecated")]

LEVEL_CHANNELS = (16, 24, 40, 96, 960)


def _x(h=64, w=96):
    return torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("arch", ["cydas_a", "cydas_b"])
def test_levels_channels_and_strides(arch):
    net = CyDAS(arch, out_indices=(0, 1, 2, 3, 4)).eval()
    assert net.out_channels == LEVEL_CHANNELS and net.out_strides == (2, 4, 8, 16, 32)
    with torch.no_grad():
        outs = net(_x())
    assert isinstance(outs, tuple)
    assert [tuple(o.shape) for o in outs] == [(2, c, 64 // s, 96 // s) for c, s in zip(LEVEL_CHANNELS, net.out_strides)]
    sub = CyDAS(arch, out_indices=(2, 4)).eval()
    sub.load_state_dict(net.state_dict())
    with torch.no_grad():
        picked = sub(_x())
    assert sub.out_channels == (40, 960) and len(picked) == 2
    torch.testing.assert_close(picked[0], outs[2])
    torch.testing.assert_close(picked[1], outs[4])
    dilated = CyDAS(arch, out_indices=(1, 4), output_stride=8).eval()
    assert dilated.out_strides == (4, 8)
    with torch.no_grad():
        assert [o.shape[-2:] for o in dilated(_x())] == [(16, 24), (8, 12)]


def test_searched_arch_json(tmp_path):
    arch = ChainArch(((0,), (1, 6 - 1), (2,), (3, 4), (5,)))
    path = tmp_path / "arch.json"
    path.write_text(arch.to_json())
    net = CyDAS(str(path), out_indices=(2, 3, 4))
    assert net.arch == arch and net.out_channels == (40, 96, 960)
    blocks_per_stage = [len(stage) for stage in net.blocks]
    assert blocks_per_stage == [1, *(len(s) for s in arch.stages), 1]  # first stage, searched, head conv


@pytest.mark.parametrize("kwargs, message", [
    (dict(out_indices=(5,)), "out_indices"),
    (dict(out_indices=(3, 1)), "out_indices"),
    (dict(out_indices=()), "out_indices"),
    (dict(frozen_stages=6), "frozen_stages"),
    (dict(frozen_stages=-2), "frozen_stages"),
    (dict(arch="cydas_z"), "unknown architecture 'cydas_z'"),
    (dict(output_stride=4), "output_stride"),
    (dict(norm_cfg=dict(type="GN", num_groups=8)), "norm_cfg"),
])
def test_invalid_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CyDAS(**kwargs)


def test_registered_in_both_libraries_independently():
    from mmdet.registry import MODELS as DET
    from mmseg.registry import MODELS as SEG

    import cydas_chain.mm.mmdet_backbone  # noqa: F401
    import cydas_chain.mm.mmseg_backbone  # noqa: F401

    for registry in (DET, SEG):
        assert isinstance(registry.build(dict(type="CyDAS", arch="cydas_a", out_indices=(4,))), CyDAS)
    # Each registration module imports its own library only.
    for mine, other in (("mmdet", "mmseg"), ("mmseg", "mmdet")):
        code = (f"import sys, cydas_chain.mm.{mine}_backbone; "
                f"assert '{other}' not in sys.modules, 'imports {other}'")
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True)


# ---- pretrained weights -------------------------------------------------------------------------
def _backbone_tensors_equal(net, state, prefix=""):
    return all(torch.equal(v, state[prefix + k]) for k, v in net.state_dict().items())


@pytest.mark.parametrize("wrap", [None, "state_dict", "model", "train_cls"])
def test_loads_a_timm_classification_checkpoint(tmp_path, wrap):
    torch.manual_seed(1)
    cls = timm.create_model("cydas_b")
    with torch.no_grad():  # running statistics too, so that buffers are checked as well
        for m in cls.modules():
            if isinstance(m, _BatchNorm):
                m.running_mean.uniform_(-1, 1)
    state = cls.state_dict()
    path = tmp_path / "cydas_b_in1k.pth"
    if wrap == "train_cls":  # tools/train_cls.py: raw and EMA weights; the EMA weights are the result
        raw = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
        torch.save({"state_dict": raw, "state_dict_ema": state, "epoch": 3}, path)
    else:
        torch.save(state if wrap is None else {wrap: state, "epoch": 3}, path)

    torch.manual_seed(2)
    net = CyDAS("cydas_b", init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    assert not _backbone_tensors_equal(net, state)
    net.init_weights()
    assert _backbone_tensors_equal(net, state)  # every backbone tensor is the checkpoint's
    assert "conv_head.weight" in state and "classifier.weight" in state  # ignored, not loaded


def test_loads_a_detector_checkpoint_with_prefix(tmp_path):
    """A checkpoint as mmengine writes it: weights under 'state_dict', numpy and HistoryBuffer logs."""
    from mmengine.logging import HistoryBuffer

    torch.manual_seed(3)
    src = CyDAS("cydas_a")
    state = {f"backbone.{k}": v for k, v in src.state_dict().items()}
    state["neck.lateral_convs.0.conv.weight"] = torch.zeros(8, 40, 1, 1)
    ckpt = {"meta": {"epoch": 12, "dataset_meta": {"classes": ("a", "b")}},
            "state_dict": state,
            "message_hub": {"log_scalars": {"train/loss": HistoryBuffer([1.5, 1.2], [1, 1])},
                            "runtime_info": {"eta": np.float64(3.0), "iter": np.int64(7)}}}
    path = tmp_path / "retinanet.pth"
    torch.save(ckpt, path)
    torch.load(path)  # the default weights_only=True load reads it (cydas_chain.mm allowlists those types)

    net = CyDAS("cydas_a", init_cfg=dict(type="Pretrained", checkpoint=str(path), prefix="backbone."))
    net.init_weights()
    assert _backbone_tensors_equal(net, state, prefix="backbone.")


def test_keys_that_do_not_line_up_fail_loudly(tmp_path):
    state = timm.create_model("cydas_b").state_dict()
    nested = tmp_path / "ddp_wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, nested)
    net = CyDAS("cydas_b", init_cfg=dict(type="Pretrained", checkpoint=str(nested)))
    with pytest.raises(CheckpointError, match="none of its keys match.*module.conv_stem.weight"):
        net.init_weights()
    # the right prefix makes the same file load
    CyDAS("cydas_b", init_cfg=dict(type="Pretrained", checkpoint=str(nested), prefix="module.")).init_weights()

    other_arch = tmp_path / "cydas_a.pth"
    torch.save(timm.create_model("cydas_a").state_dict(), other_arch)
    with pytest.raises(CheckpointError, match="lacks|differ in shape"):
        CyDAS("cydas_b", init_cfg=dict(type="Pretrained", checkpoint=str(other_arch))).init_weights()
    with pytest.raises(CheckpointError, match="not found"):
        CyDAS("cydas_b", init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "nope.pth"))).init_weights()


# ---- training behaviour -------------------------------------------------------------------------
def test_frozen_stages_do_not_change():
    torch.manual_seed(4)
    net = CyDAS("cydas_b", out_indices=(2, 3, 4), frozen_stages=2).train()
    frozen = [net.conv_stem, net.bn1, net.blocks[0], net.blocks[1]]  # stem + the stages of levels 0, 1
    frozen_names = {f"{n}.{k}" for n in ("conv_stem", "bn1", "blocks.0", "blocks.1")
                    for k in dict(net.get_submodule(n).state_dict())}
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in net.blocks[2].parameters())
    assert all(not m.training for f in frozen for m in f.modules())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    for _ in range(2):
        opt.zero_grad()
        sum(o.mean() for o in net(_x())).backward()
        opt.step()
    after = net.state_dict()
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert not changed & frozen_names, sorted(changed & frozen_names)[:3]
    assert any(k.startswith("blocks.2.") for k in changed)  # the rest trains


def test_norm_eval_keeps_every_norm_layer_in_eval_mode():
    net = CyDAS("cydas_a", norm_eval=True)
    net.train()
    assert net.training
    norms = [m for m in net.modules() if isinstance(m, _BatchNorm)]
    assert len(norms) > 20 and not any(m.training for m in norms)
    stats = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    net(_x())
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in stats.items())
    net_bn = CyDAS("cydas_a", norm_eval=False).train()
    assert all(m.training for m in net_bn.modules() if isinstance(m, _BatchNorm))


def test_with_cp_gives_the_same_outputs_and_gradients():
    torch.manual_seed(5)
    plain = CyDAS("cydas_a", out_indices=(3, 4)).train()
    cp = CyDAS("cydas_a", out_indices=(3, 4), with_cp=True).train()
    cp.load_state_dict(plain.state_dict())
    grads = []
    for net in (plain, cp):
        x = _x().requires_grad_(True)
        outs = net(x)
        sum(o.square().mean() for o in outs).backward()
        grads.append((outs, x.grad, net.conv_stem.weight.grad))
    for a, b in zip(grads[0][0], grads[1][0]):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(grads[0][1], grads[1][1])
    torch.testing.assert_close(grads[0][2], grads[1][2])


def test_sync_bn_keeps_timm_fused_activations(tmp_path):
    from timm.layers import BatchNormAct2d, SyncBatchNormAct

    torch.manual_seed(6)
    bn = CyDAS("cydas_a", norm_cfg=dict(type="BN")).eval()
    # Outside a distributed run SyncBN means BN (mmengine's Runner would revert it anyway).
    local = CyDAS("cydas_a", norm_cfg=dict(type="SyncBN"))
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in local.modules())
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        sync = CyDAS("cydas_a", norm_cfg=dict(type="SyncBN", requires_grad=False)).eval()
    finally:
        torch.distributed.destroy_process_group()
    fused = [m for m in sync.modules() if isinstance(m, SyncBatchNormAct)]
    assert fused and not any(type(m) is BatchNormAct2d for m in sync.modules())
    assert all(not p.requires_grad for m in fused for p in m.parameters())
    assert {type(m.act).__name__ for m in fused} >= {"SiLU"}  # the activation survived
    sync.load_state_dict(bn.state_dict())
    with torch.no_grad():
        for a, b in zip(bn(_x()), sync(_x())):
            torch.testing.assert_close(a, b)


def test_mm_config_macs_counts_backbone_and_whole_network():
    from cydas_chain.core.flops import count_macs
    from cydas_chain.mm.flops import mm_config_macs

    cost = mm_config_macs(ROOT / "mm_configs" / "retinanet_cydas_b.py", input_size=(64, 96))
    assert cost["scope"] == "mmdet" and cost["input_size"] == (64, 96)
    ref = count_macs(CyDAS("cydas_b", out_indices=(2, 3, 4)), (64, 96))
    assert cost["backbone"] == ref.as_dict()
    assert cost["model"]["fvcore_macs"] > 2 * cost["backbone"]["fvcore_macs"]  # FPN + RetinaHead
    assert cost["model"]["params"] > cost["backbone"]["params"]
