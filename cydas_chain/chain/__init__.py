"""The chain search space: SPOS supernet, cost tables, budget sampler, teacher board, searcher."""
from .board import Board, Entry
from .cost import CostTable, build_cost_table
from .sampler import Limit, PathSampler
from .space import NUM_LAYERS, path_str, space_size, uniform_paths
from .supernet import ChainSupernet, extract_child

__all__ = ["Board", "Entry", "CostTable", "build_cost_table", "Limit", "PathSampler", "NUM_LAYERS",
           "path_str", "space_size", "uniform_paths", "ChainSupernet", "extract_child"]
