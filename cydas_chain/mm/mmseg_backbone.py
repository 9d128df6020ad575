"""Registers the CyDAS backbone with MMSegmentation: ``custom_imports=dict(imports=['cydas_chain.mm.mmseg_backbone'])``."""
from mmseg.registry import MODELS

from .backbone import CyDAS

MODELS.register_module("CyDAS", module=CyDAS)

__all__ = ["CyDAS"]
