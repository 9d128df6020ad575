"""The DARTS cell space: operations, genotypes, search/evaluation networks, the cyclic searcher."""
from .genotypes import PUBLISHED_NAMES, Genotype, published, resolve_genotype

__all__ = ["PUBLISHED_NAMES", "Genotype", "published", "resolve_genotype"]
