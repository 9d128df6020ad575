"""The SPOS supernet: child extraction is exact, only the path trains, the loss decreases."""
import numpy as np
import pytest
import torch

from cydas_chain.chain import ChainSupernet, extract_child
from cydas_chain.chain.searcher import ChainSearcher, SearchConfig
from cydas_chain.core.data import TensorImageDataset
from cydas_chain.core.distributed import DistInfo
from cydas_chain.core.logging import get_logger
from cydas_chain.models import DEFAULT_SPACE, OPS, PUBLISHED, SKIP, ChainArch

SHARING = ["entangled", "independent"]


@pytest.fixture(scope="module", params=SHARING)
def supernet(request):
    torch.manual_seed(0)
    net = ChainSupernet(num_classes=10, weight_sharing=request.param)
    # give the BN running statistics non-trivial values, as after training
    net.train()
    with torch.no_grad():
        for p in DEFAULT_SPACE.uniform_paths(np.random.default_rng(0), 20):
            net(torch.randn(4, 3, 32, 32), p)
    return net


def test_child_extraction_is_exact(supernet):
    x = torch.randn(3, 3, 48, 48)
    paths = [PUBLISHED["cydas_b"].to_path(), PUBLISHED["cydas_a"].to_path(),
             *DEFAULT_SPACE.uniform_paths(np.random.default_rng(1), 2).tolist()]
    supernet.eval()
    for path in paths:
        child = extract_child(supernet, path).eval()
        assert child.chain_arch == ChainArch.from_path(path)
        with torch.no_grad():
            torch.testing.assert_close(supernet(x, path), child(x), rtol=1e-5, atol=1e-5, msg=str(path))


def test_skip_positions_are_interchangeable(supernet):
    """A stage's blocks are renumbered over the skips: [op, SKIP, op2, SKIP] keeps two blocks."""
    path = list(PUBLISHED["cydas_a"].to_path())
    path[4:8] = [1, SKIP, 2, SKIP]
    sd = supernet.child_state_dict(path)
    assert torch.equal(sd["blocks.2.1.conv_pw.weight"], supernet.layers[6].block_state_dict(2)["conv_pw.weight"])
    assert not any(k.startswith("blocks.2.2.") for k in sd)


def test_entangled_ops_share_one_block():
    """Every op of an entangled slot is a slice of the largest block: kernel k the centre k x k,
    expansion e the first in*e channels; the independent supernet has one block per op."""
    ent = ChainSupernet(num_classes=10, weight_sharing="entangled")
    ind = ChainSupernet(num_classes=10, weight_sharing="independent")
    n_ind = sum(p.numel() for p in ind.layers.parameters())
    n_ent = sum(p.numel() for p in ent.layers.parameters())
    assert n_ent < n_ind / 3  # one k7 e6 block a slot instead of six blocks
    layer = ent.layers[5]
    big = layer.block.conv_dw.weight
    for op, (kernel, expansion) in enumerate((o.kernel, o.expansion) for o in OPS):
        sd = layer.block_state_dict(op)
        mid = 40 * expansion  # stage 2 (40 channels) slot: in = out = 40
        c = (7 - kernel) // 2
        assert sd["conv_dw.weight"].shape == (mid, 1, kernel, kernel)
        assert torch.equal(sd["conv_dw.weight"], big[:mid, :, c:c + kernel, c:c + kernel])
        assert sd["conv_pwl.weight"].shape == (40, mid, 1, 1)


def test_only_the_path_gets_gradients(supernet):
    path = DEFAULT_SPACE.uniform_paths(np.random.default_rng(2), 1)[0]
    supernet.train()
    supernet.zero_grad(set_to_none=True)
    supernet(torch.randn(2, 3, 32, 32), path).sum().backward()
    for layer, choice in enumerate(path):
        slot = supernet.layers[layer]
        if supernet.weight_sharing == "entangled":  # the slot's block trains unless skipped
            grads = [p.grad is not None for p in slot.parameters()]
            assert all(grads) if choice != SKIP else not any(grads), (layer, choice)
            continue
        for op, block in enumerate(slot.blocks):
            has_grad = all(p.grad is not None for p in block.parameters())
            no_grad = all(p.grad is None for p in block.parameters())
            assert has_grad if op == choice else no_grad, (layer, op)
    supernet.zero_grad(set_to_none=True)


def test_loss_decreases_on_a_repeated_batch(tmp_path):
    g = np.random.default_rng(0)
    images = g.integers(0, 255, (32, 16, 16, 3), dtype=np.uint8)
    labels = [i % 4 for i in range(32)]
    data = TensorImageDataset(images, labels, classes=list("abcd"))
    from torchvision import transforms as T
    from cydas_chain.core.data import normalize_uint8
    tf = T.PILToTensor()  # uint8, as build_transforms gives: the search normalises on the device
    cfg = SearchConfig(max_macs=int(400e6), epochs=40, batch_size=16, img_size=16, lr=0.02, warmup_epochs=0,
                       eval_interval=1, seed=0)
    search = ChainSearcher(cfg, data, tf, TensorImageDataset(images[:8], labels[:8], tf, list("abcd")),
                           list("abcd"), DistInfo(), get_logger("test_chain"))
    x = normalize_uint8(torch.stack([tf(data[i][0]) for i in range(16)]), search.mean, search.std)
    y = torch.tensor(labels[:16])
    path = search.board.teacher.path  # the teacher's own path: KL starts near 0
    losses = [float(search.train_step(x, y, path)["loss"]) for _ in range(20)]
    assert np.mean(losses[-5:]) < 0.2 * np.mean(losses[:3]), losses
