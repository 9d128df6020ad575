"""Network definitions of the DARTS cell space: operations, genotypes (and the published cells),
evaluation networks registered with timm, the NAS-Bench-201 cell and network.

The search networks and the cyclic searcher are in :mod:`cydas_chain.darts`; they import these.
"""
from .genotypes import PUBLISHED_NAMES, Genotype, published, resolve_genotype

__all__ = ["PUBLISHED_NAMES", "Genotype", "published", "resolve_genotype"]
