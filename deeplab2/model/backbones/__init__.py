"""Backbones: ResNet, MobileNetV3, Xception, Wide-ResNet / SWideRNet."""
from deeplab2.model.backbones.base import FEATURE_KEYS
from deeplab2.model.backbones.base import FINAL
from deeplab2.model.backbones.base import Backbone
from deeplab2.model.backbones.mobilenet_v3 import MobileNetV3
from deeplab2.model.backbones.pretrained import load_imagenet_weights
from deeplab2.model.backbones.registry import backbone_names
from deeplab2.model.backbones.registry import get_backbone
from deeplab2.model.backbones.registry import register_backbone
from deeplab2.model.backbones.registry import takes_activation
from deeplab2.model.backbones.resnet import ResNet
from deeplab2.model.backbones.wide_resnet import SWideRNet
from deeplab2.model.backbones.xception import Xception

__all__ = [
    "FEATURE_KEYS", "FINAL", "Backbone", "MobileNetV3", "ResNet",
    "SWideRNet", "Xception", "backbone_names", "get_backbone",
    "load_imagenet_weights", "register_backbone", "takes_activation",
]
