"""Panoptic-DeepLab model: `build_model` (gin edge) and `PanopticDeepLab`."""
from deeplab2.model.builder import build_model
from deeplab2.model.panoptic_deeplab import PanopticDeepLab
