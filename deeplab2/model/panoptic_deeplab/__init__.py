"""Panoptic-DeepLab (paper 000): the bottom-up family. Importing this package
registers it as the "panoptic_deeplab" meta-architecture."""
from deeplab2.model.meta import register_meta_architecture
from deeplab2.model.panoptic_deeplab.family import PanopticDeepLabArchitecture
from deeplab2.model.panoptic_deeplab.model import PanopticDeepLab

register_meta_architecture(PanopticDeepLabArchitecture())
