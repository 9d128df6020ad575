"""CyDAS-a/b as timm models: published sizes, and what timm's own suite checks of every model."""
import json

import pytest
import timm
import torch
from timm.data import resolve_data_config

import cydas_chain  # noqa: F401  (registers the models)
from cydas_chain.core import ArchError, CheckpointError, count_macs, save_checkpoint
from cydas_chain.models import LAYOUT, OPS, PUBLISHED, SKIP, ChainArch, resolve_arch

# Paper figures: parameters and multiply-adds at 224x224 with 1000 classes.
PAPER = {"cydas_a": (7.0e6, 294e6), "cydas_b": (6.4e6, 394e6)}
NAMES = list(PAPER)


@pytest.fixture(scope="module")
def costs():
    return {n: count_macs(timm.create_model(n), 224) for n in NAMES}


def test_registered_with_timm():
    assert set(timm.list_models("cydas*")) >= {"cydas_a", "cydas_b", "cydas_chain"}


@pytest.mark.parametrize("name", NAMES)
def test_published_sizes(name, costs):
    """Near the paper's table; the released CyDAS-b (6.465M) is 1.02% over the paper's rounded 6.4M,
    so parameters are pinned exactly against the released networks below."""
    params, macs = PAPER[name]
    cost = costs[name]
    assert abs(cost.params / params - 1) < 0.011, cost
    assert abs(cost.fvcore_macs / macs - 1) < 0.06, cost
    assert abs(cost.thop_macs / macs - 1) < 0.06, cost


# The released networks as the official code builds them (CDARTS_detection's mobilenetv3.py):
# parameters exactly, MACs at 224x224 with fvcore and thop.
RELEASED = {"cydas_a": (6_993_560, 308.2e6, 296.4e6), "cydas_b": (6_465_224, 403.4e6, 386.6e6)}


@pytest.mark.parametrize("name", NAMES)
def test_released_sizes(name, costs):
    params, fvcore, thop = RELEASED[name]
    cost = costs[name]
    assert cost.params == params
    assert abs(cost.fvcore_macs / fvcore - 1) < 0.01, cost
    assert abs(cost.thop_macs / thop - 1) < 0.01, cost


def test_released_cydas_b_has_five_blocks_in_its_80_channel_stage():
    """The official list ends that stage with ``ir_r2_k3_s1_e4_c80_se0.25`` under op 2: two k5 e4."""
    model = timm.create_model("cydas_b")
    assert [len(stage) for stage in model.blocks] == [1, 4, 4, 5, 4, 4, 1]
    assert PUBLISHED["cydas_b"].block_strings()[2][3:] == ["ir_r1_k5_s1_e4_c80_se0.25"] * 2
    assert len(model.state_dict()) == 494


def test_published_architectures_as_block_strings():
    b = PUBLISHED["cydas_b"]
    assert b.block_strings()[4] == [  # the released weights' last stage: kernels 5,7,7,5
        "ir_r1_k5_s2_e4_c192_se0.25", "ir_r1_k7_s1_e4_c192_se0.25",
        "ir_r1_k7_s1_e4_c192_se0.25", "ir_r1_k5_s1_e4_c192_se0.25"]
    a = timm.create_model("cydas_a")
    depths = [len(stage) for stage in a.blocks]
    assert depths == [1, 1, 2, 3, 4, 3, 1]  # first stage, five searched stages, head conv
    se = a.blocks[1][0].se
    assert se.conv_reduce.in_channels == 96  # expansion 6 of the 16 input channels
    assert se.conv_reduce.out_channels == 24  # SE reduction 0.25 of the expanded width
    assert isinstance(se.act1, torch.nn.ReLU) and isinstance(se.gate, torch.nn.Hardsigmoid)
    # Swish everywhere outside SE: stem, blocks, head conv, after conv_head
    assert all(isinstance(act, torch.nn.SiLU) for act in (a.bn1.act, a.blocks[2][0].bn1.act, a.act2))


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_every_parameter_gets_a_gradient(name):
    model = timm.create_model(name, num_classes=7, in_chans=1, drop_path_rate=0.0, drop_rate=0.0)
    x = torch.randn(2, 1, 64, 64)
    out = model(x)
    assert out.shape == (2, 7)
    out.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing[:5]


@pytest.mark.parametrize("name", NAMES)
def test_default_cfg_consistency(name):
    model = timm.create_model(name).eval()
    cfg = model.pretrained_cfg
    x = torch.randn(1, *cfg["input_size"])
    feats = model.forward_features(x)
    assert feats.shape[-2:] == cfg["pool_size"]
    assert feats.shape[1] == model.num_features == LAYOUT.head_width  # timm: width before the head
    pre = model.forward_head(feats, pre_logits=True)
    assert pre.shape == (1, model.head_hidden_size) and model.head_hidden_size == LAYOUT.num_features
    assert model.get_classifier() is model.classifier and cfg["classifier"] == "classifier"
    assert isinstance(model.get_submodule(cfg["first_conv"]), torch.nn.Conv2d)
    model.reset_classifier(0)
    assert model(x).shape == (1, model.head_hidden_size)
    model.reset_classifier(0, "")  # no pooling either: the 4-D features (timm's contract)
    assert model(x).ndim == 4
    model.reset_classifier(3, "avg")
    assert model(x).shape == (1, 3)
    data_cfg = resolve_data_config({}, model=model)
    assert data_cfg["input_size"] == (3, 224, 224) and data_cfg["crop_pct"] == 0.875
    assert data_cfg["mean"] == timm.data.IMAGENET_DEFAULT_MEAN


@pytest.mark.parametrize("name", NAMES)
def test_features_only(name):
    model = timm.create_model(name, features_only=True).eval()
    assert model.feature_info.reduction() == [2, 4, 8, 16, 32]
    assert model.feature_info.channels() == [16, 24, 40, 96, 960]
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == model.feature_info.channels()
    assert [64 // o.shape[-1] for o in outs] == [2, 4, 8, 16, 32]
    sub = timm.create_model(name, features_only=True, out_indices=(2, 4))
    assert sub.feature_info.channels() == [40, 960]
    assert len(sub(torch.randn(1, 3, 64, 64))) == 2


def test_torchscript_matches_eager():
    model = timm.create_model("cydas_b").eval()
    scripted = torch.jit.script(model)
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(scripted(x), model(x))


def test_fx_feature_extraction():
    from timm.models import get_graph_node_names
    from timm.models._features_fx import create_feature_extractor

    model = timm.create_model("cydas_a").eval()
    _, eval_nodes = get_graph_node_names(model)
    fx = create_feature_extractor(model, return_nodes=[eval_nodes[-1]])
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(fx(x)[eval_nodes[-1]], model(x))
    feats = timm.create_model("cydas_a", features_only=True, feature_cls="fx").eval()
    assert [f.shape[1] for f in feats(x)] == [16, 24, 40, 96, 960]


def test_pretrained_loads_a_local_file(tmp_path):
    src = timm.create_model("cydas_b")
    path = tmp_path / "cydas_b.pth"
    save_checkpoint({"state_dict": src.state_dict()}, path)
    model = timm.create_model("cydas_b", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    ten = timm.create_model("cydas_b", pretrained=True, num_classes=10,
                            pretrained_cfg_overlay=dict(file=str(path)))
    assert ten.classifier.out_features == 10
    assert torch.equal(ten.conv_stem.weight, src.conv_stem.weight)


def test_pretrained_without_a_file_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="pretrained_cfg_overlay"):
        timm.create_model("cydas_a", pretrained=True)
    with pytest.raises(CheckpointError, match="not found"):
        timm.create_model("cydas_a", pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / "x.pth")))


# ---- architecture as data ---------------------------------------------------------------------
def test_arch_json_roundtrip_and_paths(tmp_path):
    for arch in PUBLISHED.values():
        assert ChainArch.from_dict(json.loads(arch.to_json())) == arch
        path = arch.to_path()
        assert len(path) == 21 and ChainArch.from_path(path) == arch
    p = tmp_path / "arch.json"
    p.write_text(PUBLISHED["cydas_a"].to_json(params=1))
    assert resolve_arch(str(p)) == PUBLISHED["cydas_a"]
    assert json.loads(p.read_text())["slots"] == [4, 4, 5, 4, 4]  # the file says which space it is of
    # a file of another space keeps its slots; one from before slots were recorded is of the default space
    other = ChainArch(((0,), (1,), (2,), (3,), (4, 4, 4)), slots=(1, 1, 1, 1, 3))
    assert ChainArch.from_dict(json.loads(other.to_json())) == other and len(other.to_path()) == 7
    legacy = {"space": "cydas_chain", "stages": [[3], [3, 3], [3, 1, 3], [3, 3, 3, 3], [3, 3, 3]]}
    assert ChainArch.from_dict(legacy) == PUBLISHED["cydas_a"]
    # a path with skips in the middle keeps the order of the remaining blocks
    path = [0, SKIP, 5, SKIP] + [1, 1, 1, 1] * 2 + [1] * 5 + [1, 1, 1, 1]
    assert ChainArch.from_path(path).stages[0] == (0, 5)
    assert len(OPS) == 6 and (OPS[3].kernel, OPS[3].expansion) == (5, 6)


def test_cydas_chain_builds_any_arch(tmp_path):
    arch = ChainArch(((0,), (1, 2), (3,), (4, 5, 0), (1,)))
    p = tmp_path / "arch.json"
    p.write_text(arch.to_json())
    model = timm.create_model("cydas_chain", arch=str(p), num_classes=5).eval()
    assert model.chain_arch == arch
    assert [len(s) for s in model.blocks] == [1, 1, 2, 1, 3, 1, 1]
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 5)


@pytest.mark.parametrize("bad, msg", [
    ({"space": "darts", "normal": []}, "'darts' space"),
    ({"stages": [[0], [1]]}, "5 searched stages"),
    ({"stages": [[0], [1], [9], [0], [0]]}, "op index 9"),
    ({"stages": [[0], [1], [], [0], [0]]}, "no block"),
    ({"stages": [[0], [1, 1, 1, 1, 1], [0], [0], [0]]}, "stage 1 has 5 blocks, more than the 4 slots"),
    ({"stages": [[0], [1], [0], [0], [0]], "slots": [4, 4, 5, 4]}, "slots must be 5 positive integers"),
    ({"stages": [[0], [1, 2], [0], [0], [0]], "slots": [4, 1, 5, 4, 4]}, "more than the 1 slots"),
    ({"path": [6] + [0] * 20}, "cannot be skipped"),
    ({"path": [0] * 7}, "21 choices"),
    ({"something": 1}, "neither"),
])
def test_malformed_architectures(bad, msg):
    with pytest.raises(ArchError, match=msg):
        ChainArch.from_dict(bad)


def test_arch_file_errors(tmp_path):
    with pytest.raises(ArchError, match="not found"):
        resolve_arch(str(tmp_path / "a.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ArchError, match="not valid JSON"):
        resolve_arch(str(tmp_path / "bad.json"))
    with pytest.raises(ArchError, match="unknown architecture 'cydas_z'"):
        timm.create_model("cydas_chain", arch="cydas_z")
