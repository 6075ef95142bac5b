"""deeplab2: Panoptic-DeepLab and its backbones in TensorFlow 2 / Keras 3."""

__version__ = "0.1.0"
