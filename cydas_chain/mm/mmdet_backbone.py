"""Registers the CyDAS backbone with MMDetection: ``custom_imports=dict(imports=['cydas_chain.mm.mmdet_backbone'])``."""
from mmdet.registry import MODELS

from .backbone import CyDAS

MODELS.register_module("CyDAS", module=CyDAS)

__all__ = ["CyDAS"]
