"""Errors of the OpenMMLab integration."""
from ..core.errors import CydasError


class ConfigError(CydasError, ValueError):
    """An mm config (or a backbone argument in it) is invalid: a ValueError, as mmdet's backbones raise."""
