"""Data: dataset descriptors, TFRecord encoding, synthetic scenes, augmentation,
target generation and the tf.data input pipeline."""
from deeplab2.data.dataset_info import DatasetInfo, dataset_names, get_dataset_info
from deeplab2.data.tfrecord import decode_example, encode_example
from deeplab2.data.targets import make_targets
from deeplab2.data.pipeline import build_dataset
