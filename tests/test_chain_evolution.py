"""Evolution on the trained supernet: never leaves the budget, improves its best, checks its options."""
import numpy as np
import pytest

from cydas_chain.chain import PathSampler, build_cost_table
from cydas_chain.chain.evolution import Evolution, EvolutionConfig
from cydas_chain.core.errors import ConfigError
from cydas_chain.models import DEFAULT_SPACE, SKIP


@pytest.fixture(scope="module")
def table():
    return build_cost_table(DEFAULT_SPACE, 1000, 224)


def toy_score(paths):
    """Rewards big ops and depth (so it pushes against the budget): the sum of the choices' MACs
    ranks, with a skip worth nothing."""
    paths = np.asarray(paths)
    return list(np.where(paths == SKIP, 0, paths + 1).sum(1).astype(float))


@pytest.mark.parametrize("lo, hi", [(0, 300e6), (250e6, 330e6)])
def test_never_leaves_the_budget_and_improves(table, lo, hi):
    sampler = PathSampler(table, hi, lo, seed=0)
    scored = []

    def score(paths):
        scored.extend(paths)
        return toy_score(paths)

    result = Evolution(sampler, EvolutionConfig(population=24, generations=8, parents=6, seed=1)).run(score)
    macs = table.path_macs(np.asarray(scored))
    assert macs.min() >= lo and macs.max() <= hi  # every path it scored is within the budget
    assert len(set(map(tuple, scored))) == len(scored)  # each path scored once
    best = [h["best_score"] for h in result["history"]]
    assert best == sorted(best) and best[-1] > best[0]  # non-decreasing, and better at the end
    mean_top = [h["mean_top"] for h in result["history"]]
    assert mean_top[-1] > mean_top[0]
    random_best = max(toy_score(sampler.sample(len(scored))))  # as many uniform paths, the same budget
    assert best[-1] > random_best
    assert result["top"][0]["score"] == best[-1] and result["top"][0]["macs"] <= hi


def test_seeded(table):
    sampler = lambda: PathSampler(table, 350e6, seed=3)  # noqa: E731
    cfg = EvolutionConfig(population=10, generations=3, parents=3, seed=4)
    assert Evolution(sampler(), cfg).run(toy_score) == Evolution(sampler(), cfg).run(toy_score)


@pytest.mark.parametrize("kwargs", [dict(population=1), dict(parents=0), dict(parents=60), dict(generations=0),
                                    dict(mutation_prob=0.0), dict(crossover_share=1.5)])
def test_bad_settings(kwargs):
    with pytest.raises(ConfigError):
        EvolutionConfig(**kwargs)
