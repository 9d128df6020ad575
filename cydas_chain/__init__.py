"""cydas_chain: CyDAS architecture search for mobile backbones.

Importing the package registers its networks with timm::

    import cydas_chain, timm
    model = timm.create_model("cydas_b")
"""
from . import models  # noqa: F401  (registers timm models)

__version__ = "0.1.0"
