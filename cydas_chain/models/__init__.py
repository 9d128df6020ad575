"""Model zoo: importing this registers the CyDAS networks with timm."""
from .chain_arch import LAYOUT, OPS, PUBLISHED, SKIP, ChainArch, resolve_arch
from .cydas import create_chain_model

__all__ = ["LAYOUT", "OPS", "PUBLISHED", "SKIP", "ChainArch", "resolve_arch", "create_chain_model"]
