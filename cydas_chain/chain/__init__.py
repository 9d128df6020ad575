"""The chain search: SPOS supernet, cost tables, budget sampler, teacher board, searcher.

The space itself (layer slots, paths <-> architectures) is data in ``cydas_chain.models``.
"""
from .board import Board, Entry
from .cost import CostTable, build_cost_table
from .sampler import Limit, PathSampler
from .supernet import WEIGHT_SHARING, ChainSupernet, extract_child

__all__ = ["Board", "Entry", "CostTable", "build_cost_table", "Limit", "PathSampler", "WEIGHT_SHARING",
           "ChainSupernet", "extract_child"]
