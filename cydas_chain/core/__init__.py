"""Shared core of both search spaces: counting, distillation, checkpoints, data, logging, DDP."""
from .checkpoint import atomic_write, load_checkpoint, load_model_weights, save_checkpoint
from .distill import soft_target_kl
from .errors import ArchError, BudgetError, CheckpointError, ConfigError, CydasError, DataError
from .flops import ModelCost, count_macs, count_params
from .seed import rng_state, seed_everything, set_rng_state

__all__ = [
    "atomic_write", "load_checkpoint", "load_model_weights", "save_checkpoint", "soft_target_kl",
    "ArchError", "BudgetError", "CheckpointError", "ConfigError", "CydasError", "DataError", "ModelCost",
    "count_macs", "count_params", "rng_state", "seed_everything", "set_rng_state",
]
