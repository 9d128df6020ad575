"""The per-layer MACs/params table equals the core counter on built standalone networks."""
import numpy as np
import pytest
import timm
import torch

import cydas_chain  # noqa: F401  (registers the timm models)
from cydas_chain.chain import build_cost_table
from cydas_chain.core.flops import count_params, fvcore_macs
from cydas_chain.models import DEFAULT_SPACE, PUBLISHED, SKIP, ChainArch, ChainSpace, create_chain_model

NUM_LAYERS = DEFAULT_SPACE.num_layers
uniform_paths = DEFAULT_SPACE.uniform_paths


@pytest.fixture(scope="module")
def table():
    return build_cost_table(DEFAULT_SPACE, 1000, 224)


def counted(model, size=224):
    model.eval()
    return fvcore_macs(model, torch.zeros(1, 3, size, size)), count_params(model)


def test_space_size():
    """The paper's 3.69e16 counts paths of four slots a stage; the released supernet (and ours) has
    five in the 80-channel stage.  Paths that differ only in where skips sit build one network."""
    assert ChainSpace((4, 4, 4, 4, 4)).size() == 6 ** 5 * 7 ** 15  # the paper's count, 3.69e16
    assert DEFAULT_SPACE.slots == (4, 4, 5, 4, 4) and NUM_LAYERS == 21
    assert DEFAULT_SPACE.size() == 6 ** 5 * 7 ** 16
    per_stage = {n: sum(6 ** d for d in range(1, n + 1)) for n in (4, 5)}  # 1554, 9330
    assert DEFAULT_SPACE.num_architectures() == per_stage[4] ** 4 * per_stage[5]
    # brute force on a small space: distinct architectures = distinct canonical paths
    small = ChainSpace((1, 2, 1, 1, 2))
    paths = np.stack(np.meshgrid(*[np.flatnonzero(m) for m in small.choice_mask], indexing="ij"), -1)
    paths = paths.reshape(-1, small.num_layers)
    assert len(paths) == small.size()
    assert len({small.canonical(p) for p in paths.tolist()}) == small.num_architectures()


def test_table_equals_counter_on_random_paths(table):
    paths = uniform_paths(np.random.default_rng(1), 3).tolist()
    smallest = [int(np.argmin(table.macs[layer, :SKIP])) if DEFAULT_SPACE.is_first_layer(layer) else SKIP
                for layer in range(NUM_LAYERS)]
    for path in paths + [smallest]:
        macs, params = counted(create_chain_model("cydas_chain", ChainArch.from_path(path)))
        assert table.path_macs(path) == macs, path
        assert table.path_params(path) == params, path
    assert table.path_macs(smallest) == table.macs_range()[0]


def test_published_architectures_are_paths_of_the_default_space(table):
    """CyDAS-a and the released CyDAS-b (five blocks in its 80-channel stage) are paths of the
    default space, with the MACs and parameters of the timm models."""
    for name, arch in PUBLISHED.items():
        path = arch.to_path()
        assert len(path) == NUM_LAYERS and ChainArch.from_path(path) == arch
        macs, params = counted(timm.create_model(name))
        assert (table.path_macs(path), table.path_params(path)) == (macs, params), name
    assert [len(s) for s in PUBLISHED["cydas_b"].stages] == [4, 4, 5, 4, 4]
    # CyDAS-b is the larger one, near the paper's 394M (fvcore counts BN and pooling too)
    assert 400e6 < table.path_macs(PUBLISHED["cydas_b"].to_path()) < 407e6


def test_table_follows_the_input_size(table):
    small = build_cost_table(DEFAULT_SPACE, 1000, 160)
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


def test_thop_table_sums_to_thops_count_and_the_budgets_that_hold_the_published_networks():
    """The thop table is additive too (a path's sum is thop's count of its network), and it puts CyDAS-a and
    CyDAS-b within the paper's budgets, 300M and 400M, where fvcore's counts do not."""
    from cydas_chain.core.flops import count_macs

    thop_table = build_cost_table(DEFAULT_SPACE, 1000, 224, counter="thop")
    assert thop_table.counter == "thop"
    path = uniform_paths(np.random.default_rng(4), 1)[0]
    assert thop_table.path_macs(path) == count_macs(create_chain_model("cydas_chain", ChainArch.from_path(path))
                                                    ).thop_macs
    fv = build_cost_table(DEFAULT_SPACE, 1000, 224)
    a, b = (PUBLISHED[n].to_path() for n in ("cydas_a", "cydas_b"))
    assert thop_table.path_macs(a) <= 300e6 < fv.path_macs(a) and thop_table.path_macs(b) <= 400e6 < fv.path_macs(b)
    with pytest.raises(Exception, match="unknown MACs counter 'ptflops'"):
        build_cost_table(DEFAULT_SPACE, 1000, 224, counter="ptflops")


def test_latency_table_is_measured_and_cached(tmp_path):
    from cydas_chain.chain.latency import cached_table

    lat = cached_table(DEFAULT_SPACE, 1000, 32, "cpu", tmp_path, repeats=1)
    assert lat.table.shape == DEFAULT_SPACE.choice_mask.shape and lat.fixed > 0
    assert (lat.table[:, :SKIP] > 0).all() and (lat.table[:, SKIP] == 0).all()
    (cached,) = tmp_path.iterdir()
    assert "32x32_c1000" in cached.name
    again = cached_table(DEFAULT_SPACE, 1000, 32, "cpu", tmp_path, repeats=1)
    assert (again.table == lat.table).all() and again.fixed == lat.fixed  # read back, not measured again
    cached_table(DEFAULT_SPACE, 1000, 48, "cpu", tmp_path, repeats=1)
    assert len(list(tmp_path.iterdir())) == 2  # another input size is another table
