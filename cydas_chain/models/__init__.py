"""Model zoo: importing this registers the CyDAS networks with timm."""
from .chain_arch import (DEFAULT_SLOTS, DEFAULT_SPACE, LAYOUT, NUM_CHOICES, OPS, PUBLISHED, SKIP, ChainArch,
                         ChainSpace, resolve_arch)
from .cydas import create_chain_model

__all__ = ["DEFAULT_SLOTS", "DEFAULT_SPACE", "LAYOUT", "NUM_CHOICES", "OPS", "PUBLISHED", "SKIP", "ChainArch",
           "ChainSpace", "resolve_arch", "create_chain_model"]
from .darts import timm_models  # noqa: F401,E402  (registers cydas_darts_cifar / cydas_darts_imagenet)
