"""Data: dataset descriptors, TFRecord encoding, synthetic scenes, augmentation,
target generation and the tf.data input pipeline.

The public functions are loaded on first use, so that importing a light module
(e.g. the descriptors in a converter's worker process) does not import TensorFlow.
"""
import importlib

_PUBLIC = {
    "DatasetInfo": "deeplab2.data.dataset_info",
    "dataset_names": "deeplab2.data.dataset_info",
    "get_dataset_info": "deeplab2.data.dataset_info",
    "decode_example": "deeplab2.data.tfrecord",
    "encode_example": "deeplab2.data.tfrecord",
    "make_targets": "deeplab2.data.targets",
    "build_dataset": "deeplab2.data.pipeline",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'deeplab2.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
