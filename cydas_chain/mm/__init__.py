"""CyDAS backbones in MMDetection and MMSegmentation (needs the ``[mm]`` extra).

Configs import ``cydas_chain.mm.mmdet_backbone`` or ``cydas_chain.mm.mmseg_backbone`` through
``custom_imports``; each registers ``type='CyDAS'`` (:class:`~cydas_chain.mm.backbone.CyDAS`) in
its library's ``MODELS`` registry.  Importing this package also lets ``torch.load`` with its
default ``weights_only=True`` read the checkpoints mmengine writes (see :mod:`.checkpoint`).
"""
import warnings

# mmengine imports pkg_resources, which warns on every import with recent setuptools.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from . import checkpoint  # noqa: E402,F401  (registers the types mmengine checkpoints hold)
from .backbone import CyDAS  # noqa: E402
from .errors import ConfigError  # noqa: E402

__all__ = ["CyDAS", "ConfigError"]
