"""Panoptic-DeepLab decoders (and the DeepLabV3+ decoder variant)."""
from deeplab2.model.decoders.decoder import VARIANTS
from deeplab2.model.decoders.decoder import Decoder
