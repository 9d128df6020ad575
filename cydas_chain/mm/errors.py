"""Errors of the OpenMMLab integration: an invalid mm config or backbone argument is the core's
``ConfigError`` (a ValueError, as mmdet's backbones raise)."""
from ..core.errors import ConfigError

__all__ = ["ConfigError"]
