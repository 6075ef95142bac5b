"""`Trainer`: one training run as Gin configures it, around the distributed loop.

The trainer reads its own options (data, batch, steps, checkpoints, precision,
compilation, seed) from Gin and builds the pieces through their Gin edges:
the model (`build_model`), the optimizer (`build_optimizer`), the input
stream (`TrainingInput`). The model family's targets and loss come from its
meta-architecture; settings the model owns (dataset, crop, output stride,
normalization) are read from the model. Only the chief writes files.
"""
import os
from typing import Callable, Optional, Union

import gin
import keras
import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2.data import pipeline
from deeplab2.evaluation.dataset_evaluation import render_prediction
from deeplab2.inference import Predictor
from deeplab2.model import build_model, get_meta_architecture, model_dir as model_dir_lib
from deeplab2.model import checkpoints
from deeplab2.training.optimizer import build_optimizer
from deeplab2.training.train_loop import LoopOptions, TrainLoop
from deeplab2.utils import distribute


class ConfigMismatchError(ValueError):
    """The Gin config describes another model than the model directory's, or
    an invalid one."""


@gin.configurable(denylist=["model_dir"])
class Trainer:
    """Options of a training run and the pieces built from them.

    Args:
        model_dir: checkpoints, configs, summaries and evaluation results.
        train_file_pattern: training TFRecords.
        global_batch_size: images per batch over all replicas.
        num_steps: training steps (optimizer updates).
        accumulation_steps: batches per step: each update follows the mean
            loss over global_batch_size * accumulation_steps images (gradient
            accumulation). Steps count updates everywhere (num_steps, the
            learning-rate schedule, checkpoints, summaries).
        steps_per_loop: steps run per tf.function call (and between progress
            updates); a checkpoint boundary ends a loop early.
        checkpoint_every, keep_checkpoints: checkpoint interval and how many
            to keep.
        summary_every: steps between TensorBoard scalars.
        image_summary_every: steps between TensorBoard pictures of the
            predictions on the first evaluation images (0: never; needs
            `Evaluator.file_pattern`).
        init_checkpoint: initial weights for a new run (ignored when
            model_dir holds a checkpoint: the run resumes): a checkpoint or
            model directory of this library (whole model or backbone), or a
            format the model family reads (e.g. google-research/deeplab2's).
        init_required: what the init checkpoint must cover, else the run
            stops listing what did not load: "backbone", "all" or a fraction
            of the model's variables.
        mixed_precision: None, "bfloat16" or "float16" (with loss scaling).
        jit_compile: compile the replica step with XLA (see
            deeplab2.training.train_loop).
        graph_optimization: run the step with TensorFlow's Grappler; None:
            off on hosts without GPUs or TPUs, where the step's first call
            takes about half as long and later steps as long (see
            deeplab2.training.train_loop).
        seed: seeds the weights, the data stream and dropout.
        deterministic: enable TF op determinism (slower), for exactly
            reproducible runs.
    """

    def __init__(self, model_dir: str, *, train_file_pattern: Optional[str] = None,
                 global_batch_size: int = 8, num_steps: int = 1000,
                 accumulation_steps: int = 1,
                 steps_per_loop: int = 10, checkpoint_every: int = 500,
                 keep_checkpoints: int = 5, summary_every: int = 100,
                 image_summary_every: int = 0, init_checkpoint: Optional[str] = None,
                 init_required: Union[str, float] = checkpoints.REQUIRED_BACKBONE,
                 mixed_precision: Optional[str] = None, jit_compile: bool = False,
                 graph_optimization: Optional[bool] = None, seed: int = 0,
                 deterministic: bool = False):
        if mixed_precision not in (None, "bfloat16", "float16"):
            raise ValueError(f"Trainer.mixed_precision must be None, 'bfloat16' or "
                             f"'float16', got {mixed_precision!r}.")
        self.model_dir = model_dir
        self.train_file_pattern = train_file_pattern
        self.global_batch_size = global_batch_size
        self.loop_options = LoopOptions(
            num_steps=num_steps, global_batch_size=global_batch_size,
            steps_per_loop=steps_per_loop, checkpoint_every=checkpoint_every,
            keep_checkpoints=keep_checkpoints, summary_every=summary_every,
            image_summary_every=image_summary_every, jit_compile=jit_compile,
            accumulation_steps=accumulation_steps, graph_optimization=graph_optimization)
        self.init_checkpoint = init_checkpoint
        self.init_required = init_required
        self.mixed_precision = mixed_precision
        self.seed = seed
        self.deterministic = deterministic

    @property
    def num_steps(self) -> int:
        return self.loop_options.num_steps

    def setup_runtime(self) -> None:
        """Seeds, determinism and precision policy; call before building."""
        keras.utils.set_random_seed(self.seed)
        if self.deterministic:
            tf.config.experimental.enable_op_determinism()
        if self.mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_" + self.mixed_precision)

    def build_model(self, strategy: tf.distribute.Strategy) -> keras.Model:
        """The Gin-bound model with its variables, under `strategy`; the chief
        writes its `model_config.json` (refusing one of another model)."""
        with strategy.scope():
            try:
                model = build_model()
            except ValueError as error:
                message = " ".join(str(error).split("\n")[0].split())
                raise ConfigMismatchError(f"build_model: {message}") from None
        config = model.model_config
        if (self.loop_options.jit_compile and strategy.num_replicas_in_sync > 1
                and config.architecture.get("synchronized_bn")
                and all("CPU" in d.upper() for d in strategy.extended.worker_devices)):
            raise ValueError(
                "Trainer.jit_compile with several CPU replicas needs "
                "build_model.synchronized_bn = False: XLA cannot compile the "
                "cross-replica all-reduce of synchronized batch norm on CPUs.")
        path = model_dir_lib.config_path(self.model_dir)
        if tf.io.gfile.exists(path):
            existing = model_dir_lib.read_model_config(self.model_dir)
            differences = sorted(
                f"{section}.{key}" for section in ("architecture",)
                for key in set(existing.architecture) | set(config.architecture)
                if existing.architecture.get(key) != config.architecture.get(key))
            for field in ("meta_architecture", "output_stride", "crop_size", "pixel_mean",
                          "pixel_std"):
                if getattr(existing, field) != getattr(config, field):
                    differences.append(field)
            if existing.dataset.num_classes != config.dataset.num_classes:
                differences.append("dataset")
            if differences:
                raise ConfigMismatchError(
                    f"{path} describes another model than the Gin config: "
                    f"{', '.join(differences)} differ. Use another --model_dir, or "
                    "delete the directory to start over.")
        if distribute.is_chief(strategy):
            model_dir_lib.write_model_config(self.model_dir, config)
        return model

    def build_optimizer(self, strategy: tf.distribute.Strategy) -> keras.optimizers.Optimizer:
        with strategy.scope():
            optimizer = build_optimizer(num_steps=self.num_steps)
            if self.mixed_precision == "float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        return optimizer

    def _dataset_fn(self, model: keras.Model) -> Callable:
        if not self.train_file_pattern:
            raise ValueError("Trainer.train_file_pattern is not set.")
        config = model.model_config
        targets = get_meta_architecture(config.meta_architecture).training_targets(config)
        options = pipeline.TrainingInput()

        # The stream skips the batches before the run's first step (TrainLoop
        # passes step * accumulation_steps): the pipeline's steps are batches.
        def dataset_fn(context: tf.distribute.InputContext, start_batch: int):
            return pipeline.training_dataset(
                self.train_file_pattern, config, targets,
                global_batch_size=self.global_batch_size, seed=self.seed,
                start_step=start_batch, input_context=context, options=options)
        return dataset_fn

    def train_loop(self, strategy: tf.distribute.Strategy, model: keras.Model,
                   pictures: Optional[Callable[[], np.ndarray]] = None) -> TrainLoop:
        """The distributed loop around `model` (built under `strategy`)."""
        config = model.model_config
        optimizer = self.build_optimizer(strategy)
        family = get_meta_architecture(config.meta_architecture)
        if self.init_checkpoint and not tf.train.latest_checkpoint(self.model_dir):
            report = checkpoints.init_from_checkpoint(
                model, self.init_checkpoint, required=self.init_required,
                foreign_formats=family.foreign_checkpoint_formats)
            print(f"Initialized from {report.summary()}", flush=True)
        loss = family.training_loss(config)
        return TrainLoop(strategy, model, loss, optimizer, self._dataset_fn(model),
                         self.model_dir, self.loop_options, image_summary_fn=pictures,
                         forward_fn=family.training_outputs)

    def write_gin_config(self, operative: bool = False) -> str:
        """Writes the Gin config under model_dir: `config.gin`, every binding
        given (before the run), or with `operative` `operative_config.gin`, the
        values every configurable called so far used, defaults included."""
        name, text = (("operative_config.gin", gin.operative_config_str()) if operative
                      else ("config.gin", gin.config_str()))
        path = os.path.join(self.model_dir, name)
        tf.io.gfile.makedirs(self.model_dir)
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(text)
        return path


def prediction_pictures(model: keras.Model, file_pattern: str,
                        num_images: int = 2) -> Callable[[], np.ndarray]:
    """A function drawing panels (prediction, ground truth, semantic, heatmap,
    offsets) of the first evaluation images under the model's current
    weights, as [N, H, W, 3] uint8."""
    batch = next(iter(pipeline.evaluation_dataset(
        file_pattern, model.model_config, global_batch_size=num_images)))
    batch = {k: v for k, v in batch.items()}

    def draw() -> np.ndarray:
        predictions = Predictor(model).batch_function(compiled=False)(batch)
        pictures = [render_prediction(batch, predictions, i, model.model_config.dataset)
                    for i in range(batch[common.IMAGE].shape[0])
                    if int(batch[common.IMAGE_INDEX][i]) >= 0]
        height = max(p.shape[0] for p in pictures)
        width = max(p.shape[1] for p in pictures)
        return np.stack([np.pad(p, ((0, height - p.shape[0]), (0, width - p.shape[1]),
                                    (0, 0))) for p in pictures])
    return draw
