"""Seamless Scene Segmentation (paper 002): the third top-down family, on Panoptic
FPN's Mask R-CNN. Importing this package registers it as the "seamless"
meta-architecture."""
from deeplab2.model.meta import register_meta_architecture
from deeplab2.model.seamless.family import SeamlessArchitecture
from deeplab2.model.seamless.model import Seamless

register_meta_architecture(SeamlessArchitecture())
