"""Panoptic FPN (paper 003): the first top-down family. Importing this package
registers it as the "panoptic_fpn" meta-architecture."""
from deeplab2.model.meta import register_meta_architecture
from deeplab2.model.panoptic_fpn.family import PanopticFPNArchitecture
from deeplab2.model.panoptic_fpn.model import PanopticFPN

register_meta_architecture(PanopticFPNArchitecture())
