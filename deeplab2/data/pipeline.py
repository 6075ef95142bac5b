"""The tf.data input pipelines: TFRecords -> batches for training and for evaluation.

Both plug into `strategy.distribute_datasets_from_function` through an
`input_context` and read their settings from the model's `ModelConfig`: the
dataset, the training crop, the input sizes the model takes
(`ModelConfig.check_input_size`), and the pad value. Elements are dicts keyed
by deeplab2.common names.

Training (`training_dataset`): an endless stream of epochs. Each epoch visits
this pipeline's files in a new order (seeded by the epoch), reads up to
`TrainingInput.parallel_files` of them interleaved, shuffles within the epoch
through a buffer of `shuffle_buffer` examples (fewer when `shuffle_memory_mb`
binds, or when the epoch is smaller), then decodes, augments (random scale or
random shorter side, crop, flip, optional AutoAugment; resized with the
family's convention, `ModelConfig.half_pixel_resize`) and adds the model
family's targets. Files
are split across pipelines (workers) when there are at least as many files as
pipelines, examples otherwise. Every random choice is keyed by the seed, the
epoch, the pipeline and the example's position in the stream, so a run resumed
at step s (`start_step`: the stream skips the records of the first s steps
without decoding them) sees exactly the batches an uninterrupted run sees.

Evaluation (`evaluation_dataset`): the files in order, each example padded to
one crop size and tagged with its position in the split (IMAGE_INDEX), split
across pipelines by example; every pipeline then pads with filler examples
(IMAGE_INDEX -1) to the same number of full batches, as accelerators need
static shapes and every replica must take part in every step.
"""
import dataclasses
import random
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import gin
import tensorflow as tf

from deeplab2 import common
from deeplab2.data import augment
from deeplab2.data import records as records_lib
from deeplab2.data.autoaugment import autoaugment as apply_autoaugment
from deeplab2.data.tfrecord import decode_example
from deeplab2.utils.tracing import without_autograph

FilePattern = Union[str, Sequence[str]]
Targets = Callable[[tf.Tensor], Dict[str, tf.Tensor]]
_KEPT_KEYS = (common.IMAGE_ID, common.IMAGE_HEIGHT, common.IMAGE_WIDTH)
_MAX_EPOCHS = 2 ** 40


@gin.configurable
@dataclasses.dataclass(frozen=True)
class TrainingInput:
    """Augmentation and shuffling of the training stream (the Gin edge).

    Attributes:
        min_scale, max_scale, scale_step: random scale range and grid (step 0
            samples the range continuously).
        shorter_side: (min, max), inclusive: instead of the scale range, scale
            each image so that its shorter side is S, sampled from this range
            (detectron2's ResizeShortestEdge; COCO (640, 800)). The scale range
            must then keep its defaults.
        shorter_side_step: grid of S (0 samples the range continuously).
        max_longer_side: with `shorter_side`, lowers the scale so that the
            longer side is at most this (COCO 1333); None: no cap.
        longest_side: resize each image so that its longer side has this
            many pixels before the random scale (paper 000: COCO 1025,
            Mapillary Vistas 2177); None: images keep their size.
        flip_prob: probability of a left-right flip.
        autoaugment: apply the paper 004 AutoAugment policy (image only).
        shuffle_buffer: examples held for shuffling within an epoch.
        shuffle_memory_mb: memory the buffer may take (serialized records); it
            holds fewer examples when the records are large.
        parallel_files: files read interleaved (at most the pipeline's files).
    """
    min_scale: float = 0.5
    max_scale: float = 2.0
    scale_step: float = 0.1
    shorter_side: Optional[Tuple[int, int]] = None
    shorter_side_step: int = 32
    max_longer_side: Optional[int] = None
    longest_side: Optional[int] = None
    flip_prob: float = 0.5
    autoaugment: bool = False
    shuffle_buffer: int = 1000
    shuffle_memory_mb: int = 2048
    parallel_files: int = 16

    def __post_init__(self):
        """Validates the resize options; errors name the field."""
        if self.longest_side is not None:
            if not (isinstance(self.longest_side, int) and not isinstance(self.longest_side, bool)
                    and self.longest_side > 0):
                raise ValueError(f"TrainingInput.longest_side must be a positive integer or "
                                 f"None, got {self.longest_side!r}.")
            if self.shorter_side is not None:
                raise ValueError("TrainingInput.longest_side and TrainingInput.shorter_side "
                                 "are two ways to size images: set one of them.")
        if self.shorter_side is None:
            for name in ("shorter_side_step", "max_longer_side"):
                if getattr(self, name) != _DEFAULTS[name]:
                    raise ValueError(f"TrainingInput.{name} needs TrainingInput.shorter_side.")
            return
        sides = augment.validate_shorter_side(self.shorter_side, self.shorter_side_step,
                                              self.max_longer_side, "TrainingInput.")
        object.__setattr__(self, "shorter_side", sides)
        for name in ("min_scale", "max_scale", "scale_step"):
            if getattr(self, name) != _DEFAULTS[name]:
                raise ValueError(f"TrainingInput.{name} is not used with "
                                 "TrainingInput.shorter_side: leave the scale range unset.")


_DEFAULTS = {field.name: field.default for field in dataclasses.fields(TrainingInput)}


@dataclasses.dataclass(frozen=True)
class RecordShard:
    """What one input pipeline reads of a split.

    files: its files; by_example: whether it keeps every num_pipelines-th
    example of them (fewer files than pipelines) instead of whole files;
    epoch_size: its examples per epoch; record_bytes: mean serialized size.
    """
    files: Tuple[str, ...]
    by_example: bool
    epoch_size: int
    record_bytes: float


def _pipeline(input_context: Optional[tf.distribute.InputContext]) -> Tuple[int, int]:
    if input_context is None:
        return 1, 0
    return input_context.num_input_pipelines, input_context.input_pipeline_id


def shard_records(files: Sequence[str], num_pipelines: int, pipeline_id: int,
                  what: str = "files") -> RecordShard:
    """This pipeline's share of `files`, with its epoch size (errors name files)."""
    counts = records_lib.count_all(files)
    if sum(counts) == 0:
        raise records_lib.RecordFileError(f"{what} hold no records: {', '.join(files)}.")
    sizes = records_lib.file_sizes(files)
    record_bytes = sum(sizes) / sum(counts)
    if len(files) >= num_pipelines:
        mine = list(range(pipeline_id, len(files), num_pipelines))
        size = sum(counts[i] for i in mine)
        if size == 0:
            raise records_lib.RecordFileError(
                f"input pipeline {pipeline_id} of {num_pipelines} got only empty files: "
                f"{', '.join(files[i] for i in mine)}.")
        return RecordShard(tuple(files[i] for i in mine), False, size, record_bytes)
    size = len(range(pipeline_id, sum(counts), num_pipelines))
    return RecordShard(tuple(files), True, size, record_bytes)


def _seed_pair(*parts) -> tf.Tensor:
    """A stateless seed [2] (int64) folding the integers or scalar tensors `parts`."""
    seed = tf.constant([0x5EED, 0], tf.int64)
    for part in parts:
        seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(part, tf.int64))
    return seed


def _epoch_records(shard: RecordShard, epoch: tf.Tensor, seed: int, pipeline_id: int,
                   num_pipelines: int, buffer: int, parallel_files: int) -> tf.data.Dataset:
    """Serialized records of one epoch: files in an order seeded by the epoch,
    interleaved, shuffled through the buffer.

    The buffer's own seed is a Python integer: tf.data refuses a tensor seed
    when the global seed is 0. Epochs still differ, as their inputs do.
    """
    files = tf.random.experimental.stateless_shuffle(
        tf.constant(shard.files), _seed_pair(seed, pipeline_id, epoch))
    dataset = tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset, cycle_length=min(parallel_files, len(shard.files)),
        block_length=1, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if shard.by_example:
        dataset = dataset.shard(num_pipelines, pipeline_id)
    buffer_seed = (seed * 1_000_003 + pipeline_id * 7_919 + 1) % (2 ** 31 - 1)
    return dataset.shuffle(buffer, seed=buffer_seed, reshuffle_each_iteration=False)


def shuffle_buffer_size(shard: RecordShard, options: TrainingInput) -> int:
    """Examples the shuffle buffer holds: the option, within the memory budget
    and the epoch."""
    by_memory = int(options.shuffle_memory_mb * 2 ** 20 // max(shard.record_bytes, 1))
    return max(1, min(options.shuffle_buffer, by_memory, shard.epoch_size))


def training_dataset(file_pattern: FilePattern, config, targets: Targets, *,
                     global_batch_size: int, seed: Optional[int] = None, start_step: int = 0,
                     input_context: Optional[tf.distribute.InputContext] = None,
                     options: Optional[TrainingInput] = None) -> tf.data.Dataset:
    """The endless training stream of one input pipeline (all of it without a context).

    Args:
        file_pattern: glob(s) of TFRecord files (deeplab2.data.tfrecord).
        config: the model's ModelConfig (dataset, crop, output stride, pad value).
        targets: the family's training targets of one label
            (`MetaArchitecture.training_targets`).
        global_batch_size: batch size over all replicas.
        seed: makes the stream reproducible; None draws a fresh seed.
        start_step: the first training step this stream feeds.
        input_context: from `distribute_datasets_from_function`.
        options: augmentation and shuffling; default: the Gin-bound ones.

    Returns:
        Per-replica batches: IMAGE float32 [b, crop_h, crop_w, 3] in [0, 255],
        PANOPTIC_LABEL int32, IMAGE_ID, IMAGE_HEIGHT, IMAGE_WIDTH (original
        size), SAMPLE_SEED (int32 [b, 2], each example's seed for the model's
        own random sampling), and the targets.
    """
    options = options or TrainingInput()
    if config.crop_size is None:
        raise ValueError("the model has no training crop: set build_model.crop_size.")
    crop = config.check_input_size(config.crop_size)
    info = config.dataset
    num_pipelines, pipeline_id = _pipeline(input_context)
    shard = shard_records(records_lib.list_files(file_pattern, "training file pattern"),
                          num_pipelines, pipeline_id, "training files")
    batch_size = (input_context.get_per_replica_batch_size(global_batch_size)
                  if input_context else global_batch_size)
    if seed is None:
        seed = random.SystemRandom().randrange(2 ** 31)
    consumed = start_step * (global_batch_size // num_pipelines)
    start_epoch, offset = divmod(consumed, shard.epoch_size)
    buffer = shuffle_buffer_size(shard, options)
    base_seed = _seed_pair(seed, pipeline_id)

    def process(index, serialized):
        example = decode_example(serialized)
        image, label = example[common.IMAGE], example[common.PANOPTIC_LABEL]
        augment_seed, autoaugment_seed, sample_seed = tf.unstack(
            tf.random.experimental.stateless_split(
                tf.random.experimental.stateless_fold_in(base_seed, index), 3))
        if options.autoaugment:
            image = apply_autoaugment(image, autoaugment_seed)
        image, label = augment.random_scale_crop_flip(
            image, label, augment_seed, crop, info.ignore_panoptic_id,
            min_scale=options.min_scale, max_scale=options.max_scale,
            scale_step=options.scale_step, shorter_side=options.shorter_side,
            shorter_side_step=options.shorter_side_step,
            max_longer_side=options.max_longer_side, longest_side=options.longest_side,
            flip_prob=options.flip_prob,
            pad_value=config.pad_value, half_pixel=config.half_pixel_resize)
        out = {key: example[key] for key in _KEPT_KEYS}
        out[common.IMAGE] = image
        out[common.PANOPTIC_LABEL] = label
        out[common.SAMPLE_SEED] = tf.cast(sample_seed, tf.int32)
        out.update(targets(label))
        return out

    dataset = tf.data.Dataset.range(start_epoch, _MAX_EPOCHS).flat_map(without_autograph(
        lambda epoch: _epoch_records(shard, epoch, seed, pipeline_id, num_pipelines, buffer,
                                     options.parallel_files)))
    dataset = dataset.skip(offset).enumerate(start=consumed)
    dataset = dataset.map(without_autograph(process), num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


@dataclasses.dataclass(frozen=True)
class EvaluationSplit:
    """Sizes of an evaluation run: images in the split, batches per pipeline."""
    num_images: int
    num_steps: int


def evaluation_split(file_pattern: FilePattern, global_batch_size: int) -> EvaluationSplit:
    files = records_lib.list_files(file_pattern, "evaluation file pattern")
    total = sum(records_lib.count_all(files))
    if total == 0:
        raise records_lib.RecordFileError(f"evaluation files hold no records: "
                                          f"{', '.join(files)}.")
    return EvaluationSplit(total, -(-total // global_batch_size))


def evaluation_dataset(file_pattern: FilePattern, config, *, global_batch_size: int,
                       crop_size: Optional[Sequence[int]] = None,
                       input_context: Optional[tf.distribute.InputContext] = None,
                       keep_image_ids: bool = True) -> tf.data.Dataset:
    """The evaluation batches of one input pipeline, each example once over all
    pipelines, padded to full batches (see the module docstring).

    Args:
        file_pattern: glob(s) of TFRecord files.
        config: the model's ModelConfig.
        global_batch_size: batch size over all replicas.
        crop_size: (height, width) every image is padded to, a size the model
            takes (e.g. `k * output_stride + 1`) and at least the largest
            image; default: the model's crop.
        input_context: from `distribute_datasets_from_function`.
        keep_image_ids: keep the string IMAGE_ID (False for devices that take
            no strings, e.g. TPUs).

    Returns:
        Per-replica batches of IMAGE (float32, padded with the pad value),
        PANOPTIC_LABEL (padded with the ignore id), IMAGE_HEIGHT, IMAGE_WIDTH
        (original size; 0 for fillers), IMAGE_INDEX (int32 position in the
        split, -1 for fillers) and IMAGE_ID ("" for fillers).
    """
    crop = config.check_input_size(crop_size or config.crop_size)
    info = config.dataset
    num_pipelines, pipeline_id = _pipeline(input_context)
    files = records_lib.list_files(file_pattern, "evaluation file pattern")
    split = evaluation_split(files, global_batch_size)
    batch_size = (input_context.get_per_replica_batch_size(global_batch_size)
                  if input_context else global_batch_size)
    local = len(range(pipeline_id, split.num_images, num_pipelines))
    padded = split.num_steps * (global_batch_size // num_pipelines)

    def process(index, serialized):
        example = decode_example(serialized)
        image, label = augment.pad_for_eval(example[common.IMAGE],
                                            example[common.PANOPTIC_LABEL], crop,
                                            info.ignore_panoptic_id, config.pad_value)
        out = {common.IMAGE: image, common.PANOPTIC_LABEL: label,
               common.IMAGE_HEIGHT: example[common.IMAGE_HEIGHT],
               common.IMAGE_WIDTH: example[common.IMAGE_WIDTH],
               common.IMAGE_INDEX: tf.cast(index, tf.int32)}
        if keep_image_ids:
            out[common.IMAGE_ID] = example[common.IMAGE_ID]
        return out

    filler = {common.IMAGE: augment.pad_image(tf.zeros([0, 0, 3]), [[0, crop[0]],
                                                                    [0, crop[1]], [0, 0]],
                                              config.pad_value),
              common.PANOPTIC_LABEL: tf.fill(crop, info.ignore_panoptic_id),
              common.IMAGE_HEIGHT: tf.constant(0, tf.int32),
              common.IMAGE_WIDTH: tf.constant(0, tf.int32),
              common.IMAGE_INDEX: tf.constant(-1, tf.int32)}
    if keep_image_ids:
        filler[common.IMAGE_ID] = tf.constant(b"")
    dataset = tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset, cycle_length=1)
    dataset = dataset.enumerate().shard(num_pipelines, pipeline_id)
    dataset = dataset.map(without_autograph(process), num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True)
    dataset = dataset.concatenate(tf.data.Dataset.from_tensors(filler).repeat(padded - local))
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
