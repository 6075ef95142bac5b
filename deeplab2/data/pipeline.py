"""The tf.data input pipeline: TFRecords -> augmented, batched training targets.

`build_dataset` is Gin-configurable and plugs into
`strategy.distribute_datasets_from_function` through its `input_context`.
Each element is a dict keyed by deeplab2.common names: IMAGE (float32 in
[0, 255], crop size), PANOPTIC_LABEL (after augmentation / padding), IMAGE_ID,
IMAGE_HEIGHT and IMAGE_WIDTH (the original size), and the targets of
deeplab2.data.targets.make_targets. The variable-length SEGMENT_IDS and
SEGMENT_IS_CROWD are dropped: crowd regions are encoded in the label itself.

Determinism: with a seed, every random choice comes from stateless ops keyed
by (seed, input pipeline id, element index), file order and shuffles are
seeded, and maps keep their order, so the same seed gives the same batches.
"""
import random
from typing import Optional, Sequence, Union

import gin
import tensorflow as tf

from deeplab2 import common
from deeplab2.data import augment
from deeplab2.data.autoaugment import autoaugment as apply_autoaugment
from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.data.targets import make_targets
from deeplab2.data.tfrecord import decode_example

_KEPT_KEYS = (common.IMAGE_ID, common.IMAGE_HEIGHT, common.IMAGE_WIDTH)


def _list_files(file_pattern: Union[str, Sequence[str]]) -> list:
    patterns = [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)
    files = sorted({f for p in patterns for f in tf.io.gfile.glob(p)})
    if not files:
        raise ValueError(f"No files match the file pattern {file_pattern!r}.")
    return files


def _records(files: list, is_training: bool, seed: int,
             input_context: Optional[tf.distribute.InputContext]) -> tf.data.Dataset:
    """Serialized examples of this input pipeline's share of the files."""
    num_pipelines = input_context.num_input_pipelines if input_context else 1
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    shard_files = len(files) >= num_pipelines
    if shard_files:
        files = files[pipeline_id::num_pipelines]
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if is_training:
        dataset = dataset.shuffle(len(files), seed=seed).repeat()
    # Training mixes up to 8 files; evaluation reads them one after the other.
    dataset = dataset.interleave(
        tf.data.TFRecordDataset, cycle_length=min(len(files), 8) if is_training else 1,
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if not shard_files:  # fewer files than pipelines: split the examples instead
        dataset = dataset.shard(num_pipelines, pipeline_id)
    return dataset


@gin.configurable
def build_dataset(file_pattern: Union[str, Sequence[str]] = gin.REQUIRED,
                  dataset_name: str = gin.REQUIRED,
                  is_training: bool = gin.REQUIRED,
                  crop_size: Sequence[int] = gin.REQUIRED,
                  global_batch_size: int = gin.REQUIRED,
                  *,
                  output_stride: int = 32,
                  min_scale: float = 0.5,
                  max_scale: float = 2.0,
                  scale_step: float = 0.1,
                  flip_prob: float = 0.5,
                  autoaugment: bool = False,
                  sigma: float = 8,
                  small_instance_area: int = 4096,
                  small_instance_weight: float = 3.0,
                  max_instances: int = 256,
                  shuffle_buffer: int = 64,
                  seed: Optional[int] = None,
                  input_context: Optional[tf.distribute.InputContext] = None
                  ) -> tf.data.Dataset:
    """Builds the batched dataset of one input pipeline (all of it without a context).

    Args:
        file_pattern: glob(s) of the TFRecord files (deeplab2.data.tfrecord).
        dataset_name: descriptor name, e.g. "cityscapes".
        is_training: random scale/crop/flip (+ AutoAugment), shuffle, repeat
            forever, drop the last partial batch; else pad each image to
            `crop_size` and read the files once, in order.
        crop_size: (height, width), each `k * output_stride + 1`.
        global_batch_size: batch size over all replicas.
        output_stride: the stride crop sizes must fit.
        min_scale, max_scale, scale_step: random scale range and grid (step 0
            samples the range continuously).
        flip_prob: probability of a left-right flip.
        autoaugment: apply the paper 004 AutoAugment policy (image only).
        sigma, small_instance_area, small_instance_weight, max_instances:
            target options, see deeplab2.data.targets.make_targets.
        shuffle_buffer: serialized examples held for shuffling (training).
        seed: makes the pipeline reproducible; None draws a fresh seed.
        input_context: from `distribute_datasets_from_function`; sets the
            per-replica batch size and this pipeline's shard.

    Returns:
        A dataset of dicts of batched tensors, per-replica batch size.
    """
    info = get_dataset_info(dataset_name)
    crop = augment.validate_crop_size(crop_size, output_stride)
    files = _list_files(file_pattern)
    batch_size = (input_context.get_per_replica_batch_size(global_batch_size)
                  if input_context else global_batch_size)
    if seed is None:
        seed = random.SystemRandom().randrange(2 ** 31)
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    base_seed = tf.constant([seed, pipeline_id], tf.int64)
    ignore_id = info.ignore_panoptic_id

    def process(index, serialized):
        example = decode_example(serialized)
        image, label = example[common.IMAGE], example[common.PANOPTIC_LABEL]
        if is_training:
            element_seed = tf.random.experimental.stateless_fold_in(base_seed, index)
            augment_seed, autoaugment_seed = tf.unstack(
                tf.random.experimental.stateless_split(element_seed, 2))
            if autoaugment:
                image = apply_autoaugment(image, autoaugment_seed)
            image, label = augment.random_scale_crop_flip(
                image, label, augment_seed, crop, ignore_id, min_scale=min_scale,
                max_scale=max_scale, scale_step=scale_step, flip_prob=flip_prob)
        else:
            image, label = augment.pad_for_eval(image, label, crop, ignore_id)
        out = {key: example[key] for key in _KEPT_KEYS}
        out[common.IMAGE] = image
        out[common.PANOPTIC_LABEL] = label
        out.update(make_targets(label, info, sigma=sigma,
                                small_instance_area=small_instance_area,
                                small_instance_weight=small_instance_weight,
                                max_instances=max_instances))
        return out

    dataset = _records(files, is_training, seed, input_context)
    if is_training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed)
    dataset = dataset.enumerate()
    dataset = dataset.map(process, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(batch_size, drop_remainder=is_training)
    return dataset.prefetch(tf.data.AUTOTUNE)

