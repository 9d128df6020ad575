"""The budget sampler: never leaves the budget, reaches every choice, is uniform, is resumable."""
import numpy as np
import pytest
import torch

from cydas_chain.chain import Limit, PathSampler, build_cost_table
from cydas_chain.core.errors import BudgetError
from cydas_chain.models import DEFAULT_SPACE

CHOICE_MASK, NUM_LAYERS = DEFAULT_SPACE.choice_mask, DEFAULT_SPACE.num_layers


@pytest.fixture(scope="module")
def table():
    return build_cost_table(DEFAULT_SPACE, 1000, 224)


@pytest.mark.parametrize("lo, hi", [(0, 400e6), (300e6, 330e6), (0, 150e6)])
def test_never_leaves_the_budget(table, lo, hi):
    paths = PathSampler(table, hi, lo, seed=1).sample(20000)
    macs = table.path_macs(paths)
    assert macs.min() >= lo and macs.max() <= hi
    assert CHOICE_MASK[np.arange(NUM_LAYERS), paths].all()  # a stage's first layer never skips


def test_reaches_every_choice_at_every_layer(table):
    paths = PathSampler(table, 400e6, seed=2).sample(20000)
    for layer in range(NUM_LAYERS):
        assert set(np.unique(paths[:, layer])) == set(np.flatnonzero(CHOICE_MASK[layer])), layer


def test_uniform_like_plain_rejection(table):
    """Plain rejection from the whole space is uniform on the feasible set by construction; the
    DP-guided sampler must give the same per-layer choice frequencies."""
    lo, hi = 330e6, 380e6
    rng = np.random.default_rng(3)
    whole = DEFAULT_SPACE.uniform_paths(rng, 600000)
    macs = table.path_macs(whole)
    reference = whole[(macs >= lo) & (macs <= hi)][:60000]
    assert len(reference) == 60000
    ours = PathSampler(table, hi, lo, seed=4).sample(60000)
    for layer in range(NUM_LAYERS):
        f_ref = np.bincount(reference[:, layer], minlength=7) / len(reference)
        f_our = np.bincount(ours[:, layer], minlength=7) / len(ours)
        assert np.abs(f_ref - f_our).max() < 0.012, (layer, f_ref, f_our)


def test_small_budget_is_reachable(table):
    lo = table.macs_range()[0]
    paths = PathSampler(table, lo + 3e6, seed=5).sample(200)
    assert table.path_macs(paths).max() <= lo + 3e6
    assert len({tuple(p) for p in paths.tolist()}) > 1


@pytest.mark.parametrize("lo, hi", [(0, 50e6), (700e6, 800e6), (400e6, 300e6)])
def test_infeasible_budget_names_the_range(table, lo, hi):
    with pytest.raises(BudgetError) as e:
        PathSampler(table, hi, lo)
    low, high = table.macs_range()
    if lo <= hi:
        assert f"{low / 1e6:.1f}M..{high / 1e6:.1f}M" in str(e.value)


def test_params_limit(table):
    limit = Limit("params", table.params.astype(float), table.fixed_params, 5.0e6)
    paths = PathSampler(table, 500e6, limits=[limit], seed=6).sample(5000)
    assert table.path_params(paths).max() <= 5.0e6
    with pytest.raises(BudgetError, match="params limit"):
        PathSampler(table, 500e6, limits=[Limit("params", limit.table, limit.fixed, 1e6)])


def test_seeded_and_resumable(table, tmp_path):
    a = PathSampler(table, 400e6, seed=7)
    b = PathSampler(table, 400e6, seed=7)
    assert (a.sample(50) == b.sample(50)).all()
    torch.save(a.state_dict(), tmp_path / "s.pth")
    expected = a.sample(50)
    c = PathSampler(table, 400e6, seed=99)
    c.load_state_dict(torch.load(tmp_path / "s.pth", weights_only=True))
    assert (c.sample(50) == expected).all()
