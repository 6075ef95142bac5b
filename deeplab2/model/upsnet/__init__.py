"""UPSNet (paper 001): the second top-down family, on Panoptic FPN's Mask R-CNN.
Importing this package registers it as the "upsnet" meta-architecture."""
from deeplab2.model.meta import register_meta_architecture
from deeplab2.model.upsnet.family import UPSNetArchitecture
from deeplab2.model.upsnet.model import UPSNet

register_meta_architecture(UPSNetArchitecture())
