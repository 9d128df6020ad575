"""Official CyDAS / Cream checkpoints -> our timm models and mm backbones (tools/convert_official.py).

The official files cannot be downloaded here, so each test writes one the way the official code does
(timm 0.1.x's CheckpointSaver: 'state_dict' saved from a DDP wrapper with 'module.' keys,
'state_dict_ema', 'optimizer', an argparse.Namespace under 'args', ...) from a timm network with
randomised weights and BN statistics, converts it, and compares the loaded network's outputs with
that network's.  That the official parameter names and shapes are ours is checked against a key
list written from the official module structure (test_official_names_and_shapes_are_ours).
"""
import argparse
import runpy
import subprocess
import sys
import warnings
from unittest import mock

import pytest
import timm
import torch

import cydas_chain  # noqa: F401  (registers the models)
from conftest import ROOT, assert_one_line_error, run_tool
from cydas_chain.core.errors import ArchError, CheckpointError
from cydas_chain.models import ChainArch
from cydas_chain.models.convert import UnsafeLoadWarning, convert_official

TOOL = "tools/convert_official.py"
TIGHT = dict(rtol=1e-6, atol=1e-6)


# ---- the official network's parameter names and shapes, from the official module structure --------
def _official_make_divisible(v, divisor=8):
    """``make_divisible`` of the official builder (CDARTS_detection/.../backbones/builder.py)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def official_shapes(stages, head_width=960, num_classes=1000):
    """Key -> shape of the official ``ChildNet`` built from ``stages`` (op indices per searched stage).

    Written from Cream/lib/models/structures/childnet.py and the CDARTS builder: stem conv_stem/bn1;
    DepthwiseSeparableConv (conv_dw, bn1, se, conv_pw, bn2); InvertedResidual (conv_pw, bn1, conv_dw,
    bn2, se, conv_pwl, bn3) with mid = make_divisible(in * e); SqueezeExcite (conv_reduce, conv_expand,
    both with bias) reducing the mid width by 0.25 to a multiple of 8; ConvBnAct (conv, bn1);
    conv_head with bias; classifier.  Choice i = (kernel, expansion) of [3, 5, 7] x [4, 6].
    """
    shapes = {}
    ops = [(k, e) for k in (3, 5, 7) for e in (4, 6)]

    def conv(name, cout, cin, k, bias=False):
        shapes[f"{name}.weight"] = (cout, cin, k, k)
        if bias:
            shapes[f"{name}.bias"] = (cout,)

    def bn(name, c):
        for t in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{t}"] = (c,)
        shapes[f"{name}.num_batches_tracked"] = ()

    def se(name, c):
        rd = _official_make_divisible(c * 0.25)
        conv(f"{name}.conv_reduce", rd, c, 1, bias=True)
        conv(f"{name}.conv_expand", c, rd, 1, bias=True)

    conv("conv_stem", 16, 3, 3)
    bn("bn1", 16)
    conv("blocks.0.0.conv_dw", 16, 1, 3)
    bn("blocks.0.0.bn1", 16)
    se("blocks.0.0.se", 16)
    conv("blocks.0.0.conv_pw", 16, 16, 1)
    bn("blocks.0.0.bn2", 16)
    cin = 16
    for s, (stage, width) in enumerate(zip(stages, (24, 40, 80, 96, 192)), start=1):
        for b, op in enumerate(stage):
            k, e = ops[op]
            mid, p = _official_make_divisible(cin * e), f"blocks.{s}.{b}"
            conv(f"{p}.conv_pw", mid, cin, 1)
            bn(f"{p}.bn1", mid)
            conv(f"{p}.conv_dw", mid, 1, k)
            bn(f"{p}.bn2", mid)
            se(f"{p}.se", mid)
            conv(f"{p}.conv_pwl", width, mid, 1)
            bn(f"{p}.bn3", width)
            cin = width
    conv("blocks.6.0.conv", head_width, 192, 1)
    bn("blocks.6.0.bn1", head_width)
    conv("conv_head", 1280, head_width, 1, bias=True)
    shapes["classifier.weight"], shapes["classifier.bias"] = (num_classes, 1280), (num_classes,)
    return shapes


@pytest.mark.parametrize("name, head_width", [("cydas_a", 960), ("cydas_b", 960), ("cydas_b", 320)])
def test_official_names_and_shapes_are_ours(name, head_width):
    model = timm.create_model(name, head_width=head_width)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == official_shapes(model.chain_arch.stages, head_width)
    if name == "cydas_a":
        assert len(ours) == 318  # as the issue reports for the released CyDAS-a


# ---- official-format checkpoints ---------------------------------------------------------------------
def randomised(model, seed):
    """Random weights and BN statistics (fresh BN statistics would hide a mixed-up BN)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, t in model.state_dict().items():
            if k.endswith("num_batches_tracked"):
                t.fill_(seed)
            elif k.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.2)
    return model.eval()


def official_checkpoint(path, ema_sd, raw_sd=None, *, prefix="module.", with_args=True):
    """A checkpoint as timm 0.1.x's CheckpointSaver writes it in the official code."""
    state = {"epoch": 449, "arch": "cydas", "version": 2, "metric": 78.2,
             "optimizer": {"state": {}, "param_groups": [{"lr": 0.016, "params": [0, 1]}]}}
    if raw_sd is not None:
        state["state_dict"] = {prefix + k: v for k, v in raw_sd.items()}
    if ema_sd is not None:
        state["state_dict_ema"] = dict(ema_sd)
    if with_args:
        state["args"] = argparse.Namespace(model="cydas", lr=0.016, ema=True)
    torch.save(state, path)
    return path


class Official:
    """A network as the official code trained it: raw and EMA weights, the checkpoint file."""

    def __init__(self, tmp, name, head_width=960, arch=None):
        kw = dict(head_width=head_width) if head_width != 960 else {}
        if arch is not None:
            kw["arch"] = arch
        self.name, self.kw = name, kw
        self.ema = randomised(timm.create_model(name, **kw), seed=1)
        self.raw = randomised(timm.create_model(name, **kw), seed=2)
        self.path = official_checkpoint(tmp / f"{name}_{head_width}_official.pth.tar",
                                        self.ema.state_dict(), self.raw.state_dict())


@pytest.fixture(scope="module")
def official_b(tmp_path_factory):
    return Official(tmp_path_factory.mktemp("official"), "cydas_b")


@pytest.fixture(scope="module")
def official_a(tmp_path_factory):
    return Official(tmp_path_factory.mktemp("official"), "cydas_a")


def _x(h=96, w=128):
    return torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(0))


def logits(model, x=None):
    with torch.no_grad():
        return model.eval()(_x() if x is None else x)


def pretrained(name, dst, **kw):
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(dst)), **kw).eval()


def convert_tool(capsys, *args):
    """tools/convert_official.py in this process (same argv parsing, run_tool and exit code)."""
    argv = [TOOL, *map(str, args)]
    with mock.patch.object(sys, "argv", argv), pytest.raises(SystemExit) as exc:
        runpy.run_path(str(ROOT / TOOL), run_name="__main__")
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(argv, exc.value.code, out, err)


# ---- conversion: API and tool ---------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["official_a", "official_b"])
def test_api_prefers_ema_and_logits_match(which, request, tmp_path):
    off = request.getfixturevalue(which)
    dst = tmp_path / "w.pth"
    with pytest.warns(UnsafeLoadWarning, match="argparse.Namespace"):
        result = convert_official(off.path, dst, off.name)
    assert result.weights == "state_dict_ema" and result.has_ema and result.unsafe_load
    assert result.num_tensors == len(off.ema.state_dict())
    saved = torch.load(dst, weights_only=True)  # a plain state dict of tensors
    assert list(saved) == list(off.ema.state_dict())
    model = pretrained(off.name, dst)
    torch.testing.assert_close(logits(model), logits(off.ema), **TIGHT)
    assert (logits(model) - logits(off.raw)).abs().max() > 1e-2  # the EMA weights, not the raw ones


def test_no_ema_takes_the_raw_module_prefixed_weights(official_b, tmp_path):
    dst = tmp_path / "raw.pth"
    with pytest.warns(UnsafeLoadWarning):
        result = convert_official(official_b.path, dst, "cydas_b", use_ema=False)
    assert result.weights == "state_dict" and result.has_ema
    torch.testing.assert_close(logits(pretrained("cydas_b", dst)), logits(official_b.raw), **TIGHT)


def test_unsafe_load_is_only_for_that_file_and_not_process_wide(official_b, tmp_path):
    before = list(torch.serialization.get_safe_globals())
    with pytest.warns(UnsafeLoadWarning):
        convert_official(official_b.path, tmp_path / "w.pth", "cydas_b")
    assert list(torch.serialization.get_safe_globals()) == before
    with pytest.raises(Exception, match="Unsupported global"):
        torch.load(official_b.path, weights_only=True)  # still refused by torch's default load


@pytest.mark.parametrize("variant", ["bare", "no_args_no_ema", "old_torch_no_bn_counters"])
def test_weights_only_files_load_without_warning(variant, official_a, tmp_path):
    sd = official_a.raw.state_dict()
    src = tmp_path / "src.pth"
    if variant == "bare":
        torch.save(sd, src)
    elif variant == "no_args_no_ema":
        official_checkpoint(src, None, sd, with_args=False)
    else:
        official_checkpoint(src, None, {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")},
                            with_args=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnsafeLoadWarning)
        result = convert_official(src, tmp_path / "w.pth", "cydas_a")
    assert not result.unsafe_load and not result.has_ema
    assert result.weights == ("bare state dict" if variant == "bare" else "state_dict")
    torch.testing.assert_close(logits(pretrained("cydas_a", tmp_path / "w.pth")), logits(official_a.raw), **TIGHT)


@pytest.mark.slow
def test_tool_subprocess_writes_what_the_configs_load(official_b, tmp_path):
    help_ = run_tool(TOOL, "--help")
    assert help_.returncode == 0
    for word in ("state_dict_ema", "--no-ema", "weights_only", "checkpoints/<model>_in1k.pth", "--head-width"):
        assert word in help_.stdout
    proc = run_tool(ROOT / TOOL, official_b.path, "--model", "cydas_b", cwd=tmp_path)  # default DST
    assert proc.returncode == 0, proc.stderr
    dst = tmp_path / "checkpoints" / "cydas_b_in1k.pth"
    assert "EMA" in proc.stdout and str(dst.relative_to(tmp_path)) in proc.stdout
    warnings_ = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(warnings_) == 1 and warnings_[0].startswith("warning: ") and "weights_only=False" in warnings_[0]
    torch.testing.assert_close(logits(pretrained("cydas_b", dst)), logits(official_b.ema), **TIGHT)


def test_tool_no_ema_and_searched_arch(capsys, tmp_path):
    arch = ChainArch(((0,), (1, 5), (2,), (3, 4), (5,)))
    (tmp_path / "arch.json").write_text(arch.to_json())
    off = Official(tmp_path, "cydas_chain", arch=str(tmp_path / "arch.json"))
    dst = tmp_path / "mine.pth"
    proc = convert_tool(capsys, off.path, dst, "--arch", tmp_path / "arch.json", "--no-ema")
    assert proc.returncode == 0, proc.stderr
    assert "raw weights" in proc.stdout
    model = pretrained("cydas_chain", dst, arch=str(tmp_path / "arch.json"))
    torch.testing.assert_close(logits(model), logits(off.raw), **TIGHT)


# ---- bad input: one line, exit 2, nothing written, nothing clobbered ------------------------------------
def _edit(sd, how):
    sd = dict(sd)
    if how == "missing":
        del sd["blocks.2.0.se.conv_expand.bias"]
    elif how == "extra":
        sd["blocks.2.0.se.gate.weight"] = torch.zeros(3)
    elif how == "shape":
        sd["blocks.2.0.conv_dw.weight"] = torch.zeros(7, 1, 3, 3)
    return sd


@pytest.mark.parametrize("how, fragments", [
    ("missing", ["blocks.2.0.se.conv_expand.bias is missing", "1 missing, 0 unexpected"]),
    ("extra", ["blocks.2.0.se.gate.weight is not a tensor of the model", "0 missing, 1 unexpected"]),
    ("shape", ["blocks.2.0.conv_dw.weight has shape (7, 1, 3, 3)", "1 differently shaped"]),
])
def test_keys_and_shapes_are_checked(how, fragments, official_b, capsys, tmp_path):
    src = official_checkpoint(tmp_path / "src.pth", _edit(official_b.ema.state_dict(), how),
                              official_b.raw.state_dict())
    dst = tmp_path / "out.pth"
    proc = convert_tool(capsys, src, dst, "--model", "cydas_b")
    assert_one_line_error(proc, "does not fit cydas_b", *fragments)
    assert not dst.exists() and list(tmp_path.iterdir()) == [src]  # no output, no temporary file


def test_another_network_names_the_first_mismatch_and_what_fits(official_a, capsys, tmp_path):
    dst = tmp_path / "out.pth"
    proc = convert_tool(capsys, official_a.path, dst, "--model", "cydas_b")
    own, theirs = timm.create_model("cydas_b").state_dict(), official_a.ema.state_dict()
    first = next(k for k in own if k not in theirs or theirs[k].shape != own[k].shape)
    assert_one_line_error(proc, "does not fit cydas_b", f": {first} ", "the weights fit --model cydas_a")
    assert not dst.exists()


def test_existing_output_is_never_clobbered(official_a, capsys, tmp_path):
    dst = tmp_path / "out.pth"
    dst.write_bytes(b"precious")
    failed = convert_tool(capsys, official_a.path, dst, "--model", "cydas_b", "--force")  # bad: wrong network
    assert_one_line_error(failed, "does not fit cydas_b")
    refused = convert_tool(capsys, official_a.path, dst, "--model", "cydas_a")  # good, but DST exists
    assert_one_line_error(refused, f"{dst} exists")
    assert dst.read_bytes() == b"precious" and sorted(tmp_path.iterdir()) == [dst]
    replaced = convert_tool(capsys, official_a.path, dst, "--model", "cydas_a", "--force")
    assert replaced.returncode == 0, replaced.stderr
    torch.testing.assert_close(logits(pretrained("cydas_a", dst)), logits(official_a.ema), **TIGHT)


@pytest.mark.parametrize("case, fragments", [
    ("corrupt", ["cannot read checkpoint"]),
    ("truncated", ["cannot read checkpoint"]),
    ("empty", ["empty"]),
    ("absent", ["checkpoint not found"]),
    ("no_weights", ["holds no weights", "'epoch'"]),
    ("unknown_model", ["unknown model 'cydas_z'"]),
    ("bad_head_width", ["head_width must be a positive int"]),
])
def test_bad_input_is_one_line(case, fragments, official_a, capsys, tmp_path):
    src, model = tmp_path / "src.pth", "cydas_a"
    extra = []
    if case == "corrupt":
        src.write_bytes(b"\x80\x02not a checkpoint" * 50)
    elif case == "truncated":
        src.write_bytes(official_a.path.read_bytes()[:100_000])
    elif case == "empty":
        src.write_bytes(b"")
    elif case == "no_weights":
        torch.save({"epoch": 3, "optimizer": {}}, src)
    elif case == "unknown_model":
        src, model = official_a.path, "cydas_z"
    elif case == "bad_head_width":
        src, extra = official_a.path, ["--head-width", "0"]
    dst = tmp_path / "out.pth"
    proc = convert_tool(capsys, src, dst, "--model", model, *extra)
    assert_one_line_error(proc, *fragments)
    assert not dst.exists()


def test_api_raises_the_same_errors(official_a, tmp_path):
    with pytest.raises(ArchError, match="unknown architecture 'cydas_z'"):
        convert_official(official_a.path, tmp_path / "o.pth", "cydas_z")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        convert_official(tmp_path / "none.pth", tmp_path / "o.pth", "cydas_a")
    with pytest.raises(CheckpointError, match="only EMA weights"), pytest.warns(UnsafeLoadWarning):
        convert_official(official_checkpoint(tmp_path / "ema_only.pth", official_a.ema.state_dict(), None),
                         tmp_path / "o.pth", "cydas_a", use_ema=False)
    assert not (tmp_path / "o.pth").exists()


# ---- the segmentation code's 320-channel head --------------------------------------------------------
def test_head_width_320_converts_and_is_named_when_missing(capsys, tmp_path):
    off = Official(tmp_path, "cydas_b", head_width=320)
    proc = convert_tool(capsys, off.path, tmp_path / "960.pth", "--model", "cydas_b")
    assert_one_line_error(proc, "blocks.6.0.conv.weight has shape (320, 192, 1, 1)",
                          "the weights fit --model cydas_b --head-width 320")
    proc = convert_tool(capsys, off.path, tmp_path / "320.pth", "--model", "cydas_b", "--head-width", "320")
    assert proc.returncode == 0, proc.stderr
    model = pretrained("cydas_b", tmp_path / "320.pth", head_width=320)
    torch.testing.assert_close(logits(model), logits(off.ema), **TIGHT)


# ---- the mm backbones -----------------------------------------------------------------------------------
def timm_features(off, out_indices):
    """The source network's feature maps, by timm's own feature extractor."""
    net = timm.create_model(off.name, features_only=True, out_indices=out_indices, **off.kw)
    missing, unexpected = net.load_state_dict(off.ema.state_dict(), strict=False)
    assert not missing and sorted(unexpected) == ["classifier.bias", "classifier.weight",
                                                  "conv_head.bias", "conv_head.weight"]
    with torch.no_grad():
        return net.eval()(_x())


def mm_backbone(registry, off, dst, out_indices):
    cfg = dict(type="CyDAS", arch=off.name, out_indices=out_indices,
               init_cfg=dict(type="Pretrained", checkpoint=str(dst)))
    if off.kw.get("head_width"):
        cfg["head_width"] = off.kw["head_width"]
    net = registry.build(cfg)
    net.init_weights()
    with torch.no_grad():
        return net, net.eval()(_x())


@pytest.mark.mm
@pytest.mark.filterwarnings("ignore:pkg_resources is deprecated")
@pytest.mark.parametrize("library", ["mmdet", "mmseg"])
def test_mm_backbones_load_the_converted_file(library, official_b, tmp_path):
    pytest.importorskip("cydas_chain.mm")
    if library == "mmdet":
        import cydas_chain.mm.mmdet_backbone  # noqa: F401
        from mmdet.registry import MODELS
    else:
        import cydas_chain.mm.mmseg_backbone  # noqa: F401
        from mmseg.registry import MODELS
    dst = tmp_path / "cydas_b_in1k.pth"
    with pytest.warns(UnsafeLoadWarning):
        convert_official(official_b.path, dst, "cydas_b")
    levels = (0, 1, 2, 3, 4)
    net, feats = mm_backbone(MODELS, official_b, dst, levels)
    assert net.out_channels == (16, 24, 40, 96, 960)
    for ours, ref in zip(feats, timm_features(official_b, levels), strict=True):
        torch.testing.assert_close(ours, ref, **TIGHT)


@pytest.mark.mm
@pytest.mark.filterwarnings("ignore:pkg_resources is deprecated")
def test_mmseg_backbone_with_the_official_320_head(tmp_path):
    pytest.importorskip("cydas_chain.mm")
    import cydas_chain.mm.mmseg_backbone  # noqa: F401
    from mmseg.registry import MODELS

    off = Official(tmp_path, "cydas_b", head_width=320)
    dst = tmp_path / "seg.pth"
    with pytest.warns(UnsafeLoadWarning):
        convert_official(off.path, dst, "cydas_b", head_width=320)
    levels = (1, 2, 3, 4)  # the official segmentation model's levels: 24, 40, 96, 320 channels
    net, feats = mm_backbone(MODELS, off, dst, levels)
    assert net.out_channels == (24, 40, 96, 320)
    for ours, ref in zip(feats, timm_features(off, levels), strict=True):
        torch.testing.assert_close(ours, ref, **TIGHT)
    with pytest.raises(CheckpointError, match=r"blocks\.6\.0\.conv\.weight: \(320, 192, 1, 1\) vs \(960"):
        MODELS.build(dict(type="CyDAS", arch="cydas_b", init_cfg=dict(type="Pretrained", checkpoint=str(dst)))
                     ).init_weights()  # without head_width=320: a loud error, not a partial backbone
