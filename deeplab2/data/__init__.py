"""Data: dataset descriptors, TFRecord encoding and record files, converters,
synthetic scenes, augmentation and the tf.data input pipelines (a model family's
training targets live with the family, e.g. deeplab2.model.panoptic_deeplab).

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
    "training_dataset": "deeplab2.data.pipeline",
    "evaluation_dataset": "deeplab2.data.pipeline",
    "TrainingInput": "deeplab2.data.pipeline",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'deeplab2.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
