"""One experiment as Gin configures it: data, model, loss, optimizer, loop.

`Experiment` reads its options from Gin and builds the pieces through their own
Gin-configurable builders (`build_dataset`, `build_model`,
`PanopticDeepLabLoss`, `build_optimizer`), so a config file binds everything a
run needs. It knows nothing of the model family beyond "image in, dict of
outputs out".
"""
import functools
import os
from typing import Optional, Sequence

import gin
import keras
import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.data.pipeline import build_dataset
from deeplab2.evaluation.coco_evaluation import format_table, write_json
from deeplab2.evaluation.dataset_evaluation import evaluate_dataset, render_prediction
from deeplab2.inference import build_predictor
from deeplab2.losses import PanopticDeepLabLoss
from deeplab2.model import build_model
from deeplab2.model.backbones.pretrained import load_checkpoint
from deeplab2.training.optimizer import build_optimizer
from deeplab2.training.train_loop import LoopOptions, TrainLoop


def segment_seed(seed: int, start_step: int) -> int:
    """Seed of the data stream that starts at `start_step`.

    The training data stream restarts at every checkpoint with a seed derived
    from the step, so a run resumed from a checkpoint sees exactly the batches
    an uninterrupted run saw, without replaying the data before it.
    """
    return (seed * 1_000_003 + start_step * 7_919) % (2 ** 31 - 1)


def resolve_checkpoint(path: str) -> str:
    """A checkpoint path, or the latest checkpoint of a folder; clear error if none."""
    if tf.io.gfile.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if not latest:
            raise FileNotFoundError(f"No checkpoint in {path}.")
        return latest
    if not tf.io.gfile.glob(path + ".index"):
        raise FileNotFoundError(f"No checkpoint {path} (expected {path}.index).")
    return path


@gin.configurable(denylist=["model_dir"])
class Experiment:
    """Options of a run and the pieces built from them."""

    def __init__(self, model_dir: str, *,
                 dataset_name: str = gin.REQUIRED,
                 train_file_pattern: Optional[str] = None,
                 eval_file_pattern: Optional[str] = None,
                 train_crop_size: Sequence[int] = gin.REQUIRED,
                 eval_crop_size: Optional[Sequence[int]] = None,
                 global_batch_size: int = 8,
                 eval_batch_size: int = 1,
                 num_steps: int = 1000,
                 steps_per_loop: int = 10,
                 checkpoint_every: int = 500,
                 keep_checkpoints: int = 5,
                 summary_every: int = 100,
                 image_summary_every: int = 0,
                 init_checkpoint: Optional[str] = None,
                 eval_every: Optional[int] = None,
                 num_eval_pictures: int = 8,
                 eval_timeout: int = 3600,
                 mixed_precision: Optional[str] = None,
                 xla: bool = False,
                 seed: int = 0,
                 deterministic: bool = False,
                 tpu: Optional[str] = None):
        """See configs/*/*.gin for typical values.

        Args:
            model_dir: checkpoints, summaries, operative config and results.
            eval_every: in train_and_eval mode, evaluate every so many steps
                (default: once, at the end).
            num_eval_pictures: evaluation pictures written per evaluation.
            image_summary_every: steps between TensorBoard pictures of the
                predictions on the first evaluation images (0: never).
            eval_timeout: continuous_eval gives up after so many seconds
                without a new checkpoint.
            mixed_precision: None, "bfloat16" (TPU) or "float16" (GPU, with
                loss scaling).
            xla: compile the forward and backward pass with XLA.
            deterministic: enable TF op determinism (slower), for exactly
                reproducible runs.
            tpu: TPU name or address; selects TPUStrategy.
        """
        self.model_dir = model_dir
        self.dataset_name = dataset_name
        self.info = get_dataset_info(dataset_name)
        self.train_file_pattern = train_file_pattern
        self.eval_file_pattern = eval_file_pattern
        self.train_crop_size = tuple(train_crop_size)
        self.eval_crop_size = tuple(eval_crop_size or train_crop_size)
        self.global_batch_size = global_batch_size
        self.eval_batch_size = eval_batch_size
        self.loop_options = LoopOptions(
            num_steps=num_steps, global_batch_size=global_batch_size,
            steps_per_loop=steps_per_loop, checkpoint_every=checkpoint_every,
            keep_checkpoints=keep_checkpoints, summary_every=summary_every,
            image_summary_every=image_summary_every, xla=xla)
        self.init_checkpoint = init_checkpoint
        self._picture_batch = None
        self.eval_every = eval_every
        self.num_eval_pictures = num_eval_pictures
        self.eval_timeout = eval_timeout
        self.mixed_precision = mixed_precision
        self.seed = seed
        self.deterministic = deterministic
        self.tpu = tpu

    def setup_runtime(self) -> None:
        """Seeds, determinism and precision policy; call before building."""
        keras.utils.set_random_seed(self.seed)
        if self.deterministic:
            tf.config.experimental.enable_op_determinism()
        if self.mixed_precision:
            if self.mixed_precision not in ("bfloat16", "float16"):
                raise ValueError(f"mixed_precision must be None, 'bfloat16' or 'float16', "
                                 f"got {self.mixed_precision!r}.")
            keras.mixed_precision.set_global_policy("mixed_" + self.mixed_precision)

    def build_model(self) -> keras.Model:
        """The Gin-bound model, built for the training crop (its ASPP pooling window)."""
        model = build_model(dataset=self.dataset_name, crop_size=self.train_crop_size)
        # Creates the variables with one cheap call; sizes do not matter to them.
        model(tf.zeros((1, 65, 65, 3)), training=False)
        return model

    def build_optimizer(self) -> keras.optimizers.Optimizer:
        optimizer = build_optimizer(num_steps=self.loop_options.num_steps)
        if self.mixed_precision == "float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        return optimizer

    def train_dataset(self, input_context: tf.distribute.InputContext,
                      start_step: int) -> tf.data.Dataset:
        if not self.train_file_pattern:
            raise ValueError("Experiment.train_file_pattern is not set.")
        return build_dataset(self.train_file_pattern, self.dataset_name, True,
                             self.train_crop_size, self.global_batch_size,
                             seed=segment_seed(self.seed, start_step),
                             input_context=input_context)

    def eval_dataset(self) -> tf.data.Dataset:
        if not self.eval_file_pattern:
            raise ValueError("Experiment.eval_file_pattern is not set.")
        return build_dataset(self.eval_file_pattern, self.dataset_name, False,
                             self.eval_crop_size, self.eval_batch_size, seed=self.seed)

    def make_train_loop(self, strategy: tf.distribute.Strategy) -> TrainLoop:
        """Builds model, loss and optimizer under `strategy` and the loop around them."""
        with strategy.scope():
            model = self.build_model()
            optimizer = self.build_optimizer()
        if self.init_checkpoint and not tf.train.latest_checkpoint(self.model_dir):
            load_checkpoint(model, self.init_checkpoint)
        loss = PanopticDeepLabLoss(ignore_label=self.info.ignore_label)
        pictures = None
        if self.loop_options.image_summary_every and self.eval_file_pattern:
            pictures = functools.partial(self.prediction_pictures, model)
        return TrainLoop(strategy, model, loss, optimizer, self.train_dataset,
                         self.model_dir, self.loop_options, image_summary_fn=pictures)

    def prediction_pictures(self, model: keras.Model, num_images: int = 2) -> np.ndarray:
        """Panels (prediction, ground truth, semantic, heatmap, offsets) of the
        first evaluation images under the current weights, as [N, H, W, 3]."""
        if self._picture_batch is None:
            self._picture_batch = next(iter(build_dataset(
                self.eval_file_pattern, self.dataset_name, False, self.eval_crop_size,
                num_images, seed=self.seed)))
        batch = self._picture_batch
        predictions = build_predictor(model, self.info).batch_function(compiled=False)(batch)
        pictures = [render_prediction(batch, predictions, i, self.info)
                    for i in range(batch[common.IMAGE].shape[0])]
        height = max(p.shape[0] for p in pictures)
        width = max(p.shape[1] for p in pictures)
        return np.stack([np.pad(p, ((0, height - p.shape[0]), (0, width - p.shape[1]), (0, 0)))
                         for p in pictures])

    def load_model(self, checkpoint: str):
        """The configured model with the weights of `checkpoint` (a checkpoint
        path or a folder: its latest one); returns (model, step, path)."""
        path = resolve_checkpoint(checkpoint)
        model = self.build_model()
        step = tf.Variable(0, dtype=tf.int64)
        # Strict: every model variable must come from the checkpoint (the
        # optimizer and random states in it are not needed here).
        try:
            tf.train.Checkpoint(model=model, step=step).restore(
                path).expect_partial().assert_existing_objects_matched()
        except (AssertionError, ValueError) as error:
            raise ValueError(f"Checkpoint {path} does not fit the configured model: "
                             f"{str(error)[:500]}") from None
        return model, int(step.numpy()), path

    def evaluate(self, checkpoint_path: str) -> dict:
        """Scores one checkpoint on the eval split; prints a table and writes
        `eval/metrics-<step>.json`, pictures and summaries under model_dir."""
        model, step, _ = self.load_model(checkpoint_path)
        predictor = build_predictor(model, self.info)
        eval_dir = os.path.join(self.model_dir, "eval")
        result = evaluate_dataset(
            predictor.batch_function(), self.eval_dataset(), self.info,
            picture_dir=os.path.join(eval_dir, f"pictures-{step}"),
            num_pictures=self.num_eval_pictures)
        result["step"] = step
        print(f"Evaluation of {checkpoint_path} (step {step}):\n{format_table(result)}")
        if result.get("AP") is not None:
            print(f"mask AP {100 * result['AP']:.2f}  AP50 {100 * result['AP50']:.2f}  "
                  f"AP75 {100 * result['AP75']:.2f}")
        write_json(result, os.path.join(eval_dir, f"metrics-{step}.json"))
        with tf.summary.create_file_writer(eval_dir).as_default(step=step):
            for group in ("All", "Things", "Stuff"):
                if result[group]["pq"] is not None:
                    tf.summary.scalar(f"PQ/{group}", result[group]["pq"])
            for name in ("miou", "AP"):
                if result.get(name) is not None:
                    tf.summary.scalar(name, result[name])
        return result

    def write_config(self, operative: bool = False) -> str:
        """Writes the Gin config under model_dir: `config.gin`, every binding
        given (written before the run: enough to rebuild it, or to export and
        evaluate with `--gin_config=model_dir/config.gin`), or with `operative`
        `operative_config.gin`, the values every configurable called so far
        actually used, defaults included (written after the run)."""
        name, text = (("operative_config.gin", gin.operative_config_str()) if operative
                      else ("config.gin", gin.config_str()))
        path = os.path.join(self.model_dir, name)
        tf.io.gfile.makedirs(self.model_dir)
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(text)
        return path
