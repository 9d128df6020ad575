"""Classification (re)training of searched backbones with the CyDAS recipe (timm's factories)."""
from .classification import TrainConfig, build_model, evaluate, evaluate_checkpoint, train
from .recipe import BASE_BATCH, BASE_LR, Recipe, scaled_lr

__all__ = ["BASE_BATCH", "BASE_LR", "Recipe", "TrainConfig", "build_model", "evaluate",
           "evaluate_checkpoint", "scaled_lr", "train"]
