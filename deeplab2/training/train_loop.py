"""The training loop: distributed steps, checkpoints, summaries, progress.

`TrainLoop` is independent of Gin and of the model family: it takes a model
that maps an image batch to a dict of outputs, a loss that maps (targets,
outputs) to per-image losses with a "total_loss" entry, an optimizer and a
function that builds the per-replica dataset. Several steps run inside one
tf.function call (`steps_per_loop`) so an accelerator is fed without a host
round trip per step.
"""
import dataclasses
import os
import time
from typing import Callable, Dict, Optional

import keras
import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2.utils.progress import Progress

TOTAL_LOSS = "total_loss"


class NonFiniteLossError(RuntimeError):
    """Raised when a loss becomes NaN or Inf; nothing is saved after it."""


@dataclasses.dataclass
class LoopOptions:
    """How long to train and how often to save, log and summarize."""
    num_steps: int
    global_batch_size: int
    steps_per_loop: int = 10
    checkpoint_every: int = 1000
    keep_checkpoints: int = 5
    summary_every: int = 100
    image_summary_every: int = 0  # 0: no prediction pictures in TensorBoard
    xla: bool = False  # compile the forward+backward pass with XLA


def _is_chief(strategy: tf.distribute.Strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


class TrainLoop:
    """Runs distributed training with checkpoints, resumption and summaries."""

    def __init__(self, strategy: tf.distribute.Strategy, model: keras.Model,
                 loss_fn: Callable[[Dict, Dict], Dict[str, tf.Tensor]],
                 optimizer: keras.optimizers.Optimizer,
                 dataset_fn: Callable[[tf.distribute.InputContext, int], tf.data.Dataset],
                 model_dir: str, options: LoopOptions,
                 image_summary_fn: Optional[Callable[[], np.ndarray]] = None):
        self.strategy = strategy
        self.model = model
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.dataset_fn = dataset_fn
        self.model_dir = model_dir
        self.options = options
        self.image_summary_fn = image_summary_fn
        with strategy.scope():
            self.step = tf.Variable(
                0, dtype=tf.int64, trainable=False, name="global_step",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self.optimizer.build(self.model.trainable_variables)
        # Random-number states (dropout, drop path) are saved too, so that a
        # resumed run continues exactly where the interrupted one stopped.
        rng_states = [v for v in self.model.variables if "seed_generator" in v.path]
        self.checkpoint = tf.train.Checkpoint(step=self.step, model=self.model,
                                              optimizer=self.optimizer,
                                              rng_states=rng_states)
        self.is_chief = _is_chief(strategy)
        directory = model_dir if self.is_chief else os.path.join(
            model_dir, f".worker-{strategy.cluster_resolver.task_id}-tmp")
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, directory, max_to_keep=options.keep_checkpoints,
            step_counter=self.step)
        self.preemption = None
        if isinstance(strategy, (tf.distribute.MultiWorkerMirroredStrategy,
                                 tf.distribute.TPUStrategy)):
            self.preemption = tf.distribute.experimental.PreemptionCheckpointHandler(
                strategy.cluster_resolver, self.manager)
        self._loop_fn = None

    def restore(self) -> int:
        """Restores the latest checkpoint in model_dir, if any; returns the step."""
        latest = tf.train.latest_checkpoint(self.model_dir)
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            print(f"Resumed from {latest} at step {int(self.step.numpy())}.", flush=True)
        return int(self.step.numpy())

    def _forward_backward(self, inputs):
        outputs = self.model(inputs[common.IMAGE], training=True)
        losses = self.loss_fn(inputs, outputs)
        per_replica = {name: tf.nn.compute_average_loss(
            value, global_batch_size=self.options.global_batch_size)
            for name, value in losses.items()}
        return per_replica, outputs

    def _replica_step(self, inputs):
        variables = self.model.trainable_variables
        forward_backward = self._forward_backward

        def compute(inputs):
            with tf.GradientTape() as tape:
                losses, outputs = forward_backward(inputs)
                scaled = self.optimizer.scale_loss(losses[TOTAL_LOSS])
            return losses, outputs, tape.gradient(scaled, variables)

        if self.options.xla:
            compute = tf.function(compute, jit_compile=True)
            # XLA compiles numbers only: leave out the image ids.
            inputs = {k: v for k, v in inputs.items() if v.dtype != tf.string}
        losses, outputs, grads = compute(inputs)
        self.optimizer.apply_gradients(zip(grads, variables))
        self.step.assign_add(1)
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in losses.values()])
        return losses, outputs, 1.0 - tf.cast(finite, tf.float32)

    def _build_loop(self, num_steps_in_loop: int):
        strategy = self.strategy

        def one_step(iterator):
            losses, _, non_finite = strategy.run(self._replica_step, args=(next(iterator),))
            losses = {k: strategy.reduce("SUM", v, axis=None) for k, v in losses.items()}
            finite = strategy.reduce("SUM", non_finite, axis=None) == 0
            return losses, finite

        @tf.function
        def loop(iterator):
            losses, all_finite = one_step(iterator)
            first_bad = tf.where(all_finite, tf.constant(-1, tf.int64), self.step.read_value())
            for _ in tf.range(num_steps_in_loop - 1):
                losses, finite = one_step(iterator)
                first_bad = tf.where(all_finite & ~finite, self.step.read_value(), first_bad)
                all_finite = all_finite & finite
            return losses, all_finite, first_bad

        return loop

    def _data_iterator(self, start_step: int):
        """A fresh data stream for the steps from `start_step` on.

        The stream restarts at every checkpoint, so a run resumed from one
        sees the same batches as an uninterrupted run (`dataset_fn` derives
        its randomness from the step) without replaying earlier data.
        """
        return iter(self.strategy.distribute_datasets_from_function(
            lambda ctx: self.dataset_fn(ctx, start_step)))

    def train(self, until_step: Optional[int] = None) -> Dict[str, float]:
        """Trains from the current step to `until_step` (default `num_steps`)
        and saves a checkpoint there; returns the last losses."""
        opts = self.options
        end = min(until_step or opts.num_steps, opts.num_steps)
        start = self.restore()
        if start >= end:
            print(f"Already trained to step {start}.")
            return {}
        iterator = self._data_iterator(start)
        writer = tf.summary.create_file_writer(os.path.join(self.model_dir, "train")) \
            if self.is_chief else tf.summary.create_noop_writer()
        progress = Progress(end - start, desc="train", unit="step")
        loops = {}
        step = start
        last = {}
        while step < end:
            n = min(opts.steps_per_loop, end - step)
            # Never cross a checkpoint boundary inside one loop.
            n = min(n, opts.checkpoint_every - step % opts.checkpoint_every)
            if n not in loops:
                loops[n] = self._build_loop(n)
            tick = time.monotonic()
            losses, finite, first_bad = loops[n](iterator)
            if not bool(finite.numpy()):
                raise NonFiniteLossError(
                    f"Loss became NaN or Inf at step {int(first_bad.numpy())} "
                    f"(losses at step {int(self.step.numpy())}: "
                    f"{ {k: float(v.numpy()) for k, v in losses.items()} }). "
                    f"Training stopped; the last good checkpoint in {self.model_dir} "
                    "is untouched. Lower the learning rate or check the data.")
            elapsed = time.monotonic() - tick
            step = int(self.step.numpy())
            last = {k: float(v.numpy()) for k, v in losses.items()}
            lr = float(self.optimizer.learning_rate.numpy()) if hasattr(
                self.optimizer.learning_rate, "numpy") else float(
                self.optimizer.learning_rate)
            progress.update(n, extra=f"step {step}  " + "  ".join(
                f"{k} {v:.4f}" for k, v in last.items()) + f"  lr {lr:.2e}")
            if step % opts.summary_every < n or step == end:
                with writer.as_default(step=step):
                    for name, value in last.items():
                        tf.summary.scalar(f"losses/{name}", value)
                    tf.summary.scalar("learning_rate", lr)
                    tf.summary.scalar("steps_per_second", n / max(elapsed, 1e-9))
                    tf.summary.scalar("examples_per_second",
                                      n * opts.global_batch_size / max(elapsed, 1e-9))
            if (self.image_summary_fn is not None and opts.image_summary_every
                    and (step % opts.image_summary_every < n or step == end)):
                with writer.as_default(step=step):
                    tf.summary.image("predictions", self.image_summary_fn(), max_outputs=4)
            if step % opts.checkpoint_every == 0 or step == end:
                self.manager.save(checkpoint_number=step)
                if step < end:
                    iterator = self._data_iterator(step)
            elif self.preemption is not None:
                self.preemption.save_checkpoint_if_preempted()
        progress.close()
        writer.flush()
        if not self.is_chief:  # a worker's own checkpoints only served the collectives
            tf.io.gfile.rmtree(self.manager.directory)
        return last
