"""Search and evaluation networks: discretization, published sizes, timm models, weight inheritance."""
import pytest
import timm
import torch

import cydas_chain  # noqa: F401  (registers the timm models)
from cydas_chain.core.flops import count_params
from cydas_chain.darts.search_net import DartsSearchNetwork, genotype_from_alpha
from cydas_chain.models.darts.eval_net import DartsEvalNetwork, inherit_weights
from cydas_chain.models.darts.genotypes import Genotype, published
from cydas_chain.models.darts.operations import DARTS_PRIMITIVES

P = {name: i for i, name in enumerate(DARTS_PRIMITIVES)}


def hand_alpha():
    """14 edges x 8 ops; 'none' is the strongest op on many edges and must never be chosen."""
    a = torch.zeros(14, len(DARTS_PRIMITIVES))
    a[:, P["none"]] = 10.0
    # node 0 (edges 0, 1): inputs 0 and 1
    a[0, P["sep_conv_3x3"]], a[1, P["max_pool_3x3"]] = 3.0, 2.0
    # node 1 (edges 2..4): inputs 0,1,2 -> keep input 2 (dil 5x5, 4.0) then input 0 (skip, 3.5)
    a[2, P["skip_connect"]], a[3, P["sep_conv_5x5"]], a[4, P["dil_conv_5x5"]] = 3.5, 1.0, 4.0
    # node 2 (edges 5..8): keep inputs 3 and 1
    a[6, P["avg_pool_3x3"]], a[8, P["sep_conv_3x3"]], a[5, P["sep_conv_3x3"]] = 2.5, 5.0, 0.5
    # node 3 (edges 9..13): keep inputs 4 and 0; input 2's none is huge but none is excluded
    a[13, P["dil_conv_3x3"]], a[9, P["sep_conv_5x5"]], a[11, P["none"]] = 6.0, 5.5, 50.0
    return a


def test_discretization_top2_excludes_none():
    g = genotype_from_alpha(hand_alpha(), hand_alpha())
    assert g.normal == (("sep_conv_3x3", 0), ("max_pool_3x3", 1),
                        ("dil_conv_5x5", 2), ("skip_connect", 0),
                        ("sep_conv_3x3", 3), ("avg_pool_3x3", 1),
                        ("dil_conv_3x3", 4), ("sep_conv_5x5", 0))
    assert g.normal_concat == (2, 3, 4, 5) and g.reduce == g.normal


def test_published_sizes_dartsv2():
    """DARTS paper: 3.3M parameters on CIFAR-10 and 4.7M in the ImageNet mobile setting (no aux head)."""
    cifar = timm.create_model("cydas_darts_cifar", genotype="dartsv2", num_classes=10)
    assert count_params(cifar) == pytest.approx(3.3e6, rel=0.02)
    imagenet = timm.create_model("cydas_darts_imagenet", genotype="dartsv2", num_classes=1000)
    assert count_params(imagenet) == pytest.approx(4.7e6, rel=0.02)
    with_aux = timm.create_model("cydas_darts_cifar", genotype="dartsv2", auxiliary=True)
    assert count_params(with_aux) > count_params(cifar)


def test_eval_network_shapes_and_aux():
    net = DartsEvalNetwork(published("cydas_cifar"), c=8, num_classes=7, layers=5, auxiliary=True,
                           drop_path_rate=0.2)
    net.train()
    out = net.forward_all(torch.randn(2, 3, 32, 32))
    assert out["logits"].shape == out["aux"].shape == (2, 7)
    net.eval()
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_imagenet_stem_takes_224_to_28():
    net = DartsEvalNetwork(published("dartsv2"), c=8, num_classes=5, layers=3, stem="imagenet", auxiliary=False)
    s0, s1 = net.stem(torch.randn(1, 3, 224, 224))
    assert s0.shape[-1] == 56 and s1.shape[-1] == 28


def test_search_network_alpha_and_stage_logits():
    net = DartsSearchNetwork(c=4, num_classes=3, layers=5, embed_hidden=8)
    assert net.alpha_normal.shape == net.alpha_reduce.shape == (14, 8)
    assert not any(p is net.alpha_normal for p in net.weight_parameters())
    out = net.forward_all(torch.randn(2, 3, 16, 16))
    assert out["logits"].shape == (2, 3) and len(out["stages"]) == 3
    out["logits"].sum().backward()
    assert net.alpha_normal.grad.abs().sum() > 0 and net.alpha_reduce.grad.abs().sum() > 0
    assert isinstance(net.genotype(), Genotype)


def test_weight_inheritance_across_genotype_change():
    g1 = published("dartsv2")
    normal = list(g1.normal)
    normal[7] = ("sep_conv_5x5", 3)  # node 3's second edge changes: new edge
    g2 = Genotype(normal, g1.normal_concat, g1.reduce, g1.reduce_concat)
    torch.manual_seed(0)
    old = DartsEvalNetwork(g1, c=4, num_classes=3, layers=3, auxiliary=False)
    with torch.no_grad():
        for p in old.parameters():
            p.add_(1.0)  # "trained": differs from any fresh initialisation
    bank = {k: v.clone() for k, v in old.state_dict().items()}
    new = DartsEvalNetwork(g2, c=4, num_classes=3, layers=3, auxiliary=False)
    report = inherit_weights(new, bank)
    shared = "cells.0.edges.n0_in0_sep_conv_3x3.0.1.weight"
    fresh = "cells.0.edges.n3_in3_sep_conv_5x5.0.1.weight"
    assert shared in report["inherited"] and torch.equal(new.state_dict()[shared], bank[shared])
    assert fresh in report["fresh"] and fresh not in bank
    assert "stem.stem0.0.weight" in report["inherited"]
    assert not any("n3_in2_dil_conv_3x3" in k for k in new.state_dict())
    # the new edge keeps its fresh initialisation
    assert not torch.equal(new.state_dict()[fresh], torch.zeros_like(new.state_dict()[fresh]))


# ---- timm's model contract (as the chain models honour it) -----------------------------------------
SMALL = dict(genotype="dartsv2", c=8, layers=5)


@pytest.mark.parametrize("name, size, reductions", [("cydas_darts_cifar", 32, [1, 2, 4]),
                                                    ("cydas_darts_imagenet", 64, [2, 4, 8, 16, 32])])
def test_timm_contract(name, size, reductions):
    from timm.data import resolve_data_config
    model = timm.create_model(name, num_classes=7, **SMALL).eval()
    cfg = model.pretrained_cfg
    assert cfg["classifier"] == "classifier" and model.get_classifier() is model.classifier
    assert isinstance(model.get_submodule(cfg["first_conv"]), torch.nn.Conv2d)
    data_cfg = resolve_data_config({}, model=model)
    assert data_cfg["input_size"] == cfg["input_size"]
    x = torch.randn(2, 3, size, size)
    feats = model.forward_features(x)
    assert feats.shape[1] == model.num_features == model.head_hidden_size
    assert size // feats.shape[-1] == reductions[-1]
    pre = model.forward_head(feats, pre_logits=True)
    assert pre.shape == (2, model.num_features)
    torch.testing.assert_close(model.forward_head(feats), model(x))
    # forward_intermediates: one level per resolution, the last the final features
    final, levels = model.forward_intermediates(x)
    torch.testing.assert_close(final, feats)
    assert [size // h.shape[-1] for h in levels] == reductions == model_reductions(model)
    assert [h.shape[1] for h in levels] == [f["num_chs"] for f in model.feature_info]
    torch.testing.assert_close(levels[-1], feats)
    only = model.forward_intermediates(x, indices=[1], intermediates_only=True, stop_early=True)
    assert len(only) == 1 and only[0].shape == levels[1].shape
    # scripting gives the eager outputs
    torch.testing.assert_close(torch.jit.script(model)(x), model(x))
    model.reset_classifier(0)
    assert model(x).shape == (2, model.num_features)
    model.reset_classifier(0, "")  # timm's contract: no pooling either, the 4-D features
    torch.testing.assert_close(model(x), feats)
    model.reset_classifier(3, "avg")
    assert model(x).shape == (2, 3)


def model_reductions(model):
    return [f["reduction"] for f in model.feature_info]


@pytest.mark.parametrize("name, size, channels", [("cydas_darts_cifar", 32, [32, 64, 128]),
                                                  ("cydas_darts_imagenet", 64, [4, 8, 32, 64, 128])])
def test_features_only(name, size, channels):
    x = torch.randn(1, 3, size, size)
    feats = timm.create_model(name, features_only=True, **SMALL).eval()
    assert feats.feature_info.channels() == channels
    outs = feats(x)
    assert [o.shape[1] for o in outs] == channels
    assert [size // o.shape[-1] for o in outs] == feats.feature_info.reduction()
    sub = timm.create_model(name, features_only=True, out_indices=(0, 1), **SMALL).eval()
    assert sub.feature_info.channels() == channels[:2] and len(sub(x)) == 2
    assert len(sub.model.cells) < 5  # the cells after the last level asked for are pruned


def test_builder_keywords_and_pretrained_file(tmp_path):
    from cydas_chain.core.checkpoint import save_checkpoint
    from cydas_chain.core.errors import CheckpointError
    model = timm.create_model("cydas_darts_cifar", device="meta", **SMALL)
    assert {p.device.type for p in model.parameters()} == {"meta"}
    model = timm.create_model("cydas_darts_cifar", dtype=torch.float64, **SMALL)
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    # pretrained: a local file only (a train_cell best.pt holds the weights under "model")
    src = timm.create_model("cydas_darts_cifar", **SMALL)
    path = tmp_path / "best.pt"
    save_checkpoint({"model": src.state_dict(), "genotype": published("dartsv2").to_dict()}, path)
    loaded = timm.create_model("cydas_darts_cifar", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                               **SMALL)
    for k, v in src.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    five = timm.create_model("cydas_darts_cifar", pretrained=True, num_classes=5,
                             pretrained_cfg_overlay=dict(file=str(path)), **SMALL)
    assert five.classifier.out_features == 5
    assert torch.equal(five.stem.stem0[0].weight, src.stem.stem0[0].weight)
    with pytest.raises(CheckpointError, match="pretrained_cfg_overlay"):
        timm.create_model("cydas_darts_cifar", pretrained=True, **SMALL)
