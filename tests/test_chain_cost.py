"""The per-layer MACs/params table equals the core counter on built standalone networks."""
import numpy as np
import pytest
import timm
import torch

import cydas_chain  # noqa: F401  (registers the timm models)
from cydas_chain.chain import ChainSupernet, build_cost_table, uniform_paths
from cydas_chain.chain.space import NUM_LAYERS, space_size
from cydas_chain.core.flops import count_params, fvcore_macs
from cydas_chain.models import PUBLISHED, SKIP, ChainArch, create_chain_model


@pytest.fixture(scope="module")
def supernet():
    torch.manual_seed(0)
    return ChainSupernet(num_classes=1000)


@pytest.fixture(scope="module")
def table(supernet):
    return build_cost_table(supernet, 224)


def counted(model, size=224):
    model.eval()
    return fvcore_macs(model, torch.zeros(1, 3, size, size)), count_params(model)


def test_space_size_is_the_papers():
    assert space_size() == 6 ** 5 * 7 ** 15


def test_table_equals_counter_on_random_paths(table):
    paths = uniform_paths(np.random.default_rng(1), 3).tolist()
    smallest = [int(np.argmin(table.macs[layer, :SKIP])) if layer % 4 == 0 else SKIP for layer in range(NUM_LAYERS)]
    for path in paths + [smallest]:
        macs, params = counted(create_chain_model("cydas_chain", ChainArch.from_path(path)))
        assert table.path_macs(path) == macs, path
        assert table.path_params(path) == params, path
    assert table.path_macs(smallest) == table.macs_range()[0]


def test_published_architectures_as_paths(table):
    for name, arch in PUBLISHED.items():
        path = arch.to_path()
        assert ChainArch.from_path(path) == arch
        macs, params = counted(timm.create_model(name))
        assert (table.path_macs(path), table.path_params(path)) == (macs, params), name
    # CyDAS-b is the larger one, near the paper's 394M (fvcore counts BN and pooling too)
    assert 380e6 < table.path_macs(PUBLISHED["cydas_b"].to_path()) < 400e6


def test_table_follows_the_input_size(supernet, table):
    small = build_cost_table(supernet, 160)
    path = uniform_paths(np.random.default_rng(2), 1)[0]
    macs, _ = counted(create_chain_model("cydas_chain", ChainArch.from_path(path)), 160)
    assert small.path_macs(path) == macs
    assert small.path_macs(path) < table.path_macs(path)
    assert small.input_size == (160, 160)


def test_batch_evaluation_matches_single(table):
    paths = uniform_paths(np.random.default_rng(3), 1000)
    batch = table.path_macs(paths)
    assert batch.shape == (1000,)
    assert all(batch[i] == table.path_macs(paths[i]) for i in range(0, 1000, 97))


def test_latency_table_is_measured_and_cached(supernet, tmp_path):
    from cydas_chain.chain.cost import measure_latency_table
    from cydas_chain.chain.space import CHOICE_MASK

    table, fixed = measure_latency_table(supernet, 32, repeats=1, cache_dir=tmp_path)
    assert table.shape == CHOICE_MASK.shape and fixed > 0
    assert (table[:, :SKIP] > 0).all() and (table[:, SKIP] == 0).all()
    (cached,) = tmp_path.iterdir()
    assert "32x32_c1000" in cached.name
    again, fixed_again = measure_latency_table(supernet, 32, repeats=1, cache_dir=tmp_path)
    assert (again == table).all() and fixed_again == fixed  # read back, not measured again
    other, _ = measure_latency_table(supernet, 48, repeats=1, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 2  # another input size is another table
