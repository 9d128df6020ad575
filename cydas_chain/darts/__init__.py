"""The DARTS cell space: search networks, the cyclic searcher, retraining.

The definitions (operations, genotypes, evaluation networks) live in :mod:`cydas_chain.models.darts`;
the genotype API is re-exported here.
"""
from ..models.darts.genotypes import PUBLISHED_NAMES, Genotype, published, resolve_genotype

__all__ = ["PUBLISHED_NAMES", "Genotype", "published", "resolve_genotype"]
