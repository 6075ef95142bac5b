"""The training loop: distributed steps, checkpoints, summaries, progress.

`TrainLoop` is independent of Gin and of the model family: it takes a model
that maps an image batch to a dict of outputs (or a `forward_fn` that runs it
on a whole batch, e.g. with its ground truth), a loss that maps (targets,
outputs) to per-image losses with a "total_loss" entry, an optimizer and a
function that builds the per-replica dataset. Several steps run inside one
tf.function call (`steps_per_loop`) so an accelerator is fed without a host
round trip per step.

Gradient accumulation (`accumulation_steps` k > 1): a step is one optimizer
update on k consecutive batches of `global_batch_size` images. Each replica
adds the gradients of its part of a batch into its own accumulators
(non-trainable, per-replica variables outside the checkpoint, zero between
steps); the update all-reduces them once and zeroes them. Every loss is
divided by global_batch_size * k, so the update follows the gradient of the
mean loss over all k batches, and the reported losses are that mean. The
step counter, the learning-rate schedule, checkpoints and summaries count
updates; the input stream advances k batches per step.

Compiled steps (`jit_compile`): with one replica the whole replica step
(forward pass, losses, gradients, loss scaling, optimizer update) is one XLA
computation. With several replicas, the replica step holds cross-replica
collectives (the gradient all-reduce, synchronized batch norm) and XLA cannot
compile collectives on CPUs (TensorFlow: "Collectives are not yet implemented
for CPU devices when compiling with XLA"): there the forward pass, losses and
gradients are compiled per replica (traced once per replica, so that each
computation reads the variables of its own device) and the all-reduce and the
update run outside; batch norm must then not be synchronized. On TPUs the
strategy compiles the whole replica step itself.

Graph optimization (`graph_optimization`): TensorFlow's Grappler rewrites a
function's graph when it first runs, on one thread. On a host without GPUs
or TPUs the loop runs its steps without it by default: on a 2-core CPU the
first call of UPSNet's step (tests/training/overfit_coco_upsnet.gin) took 10
s instead of 20-24 s, and its later steps as long: medians of 0.82-0.96 s a
step without Grappler (4 runs, mean 0.87) and 0.78-0.96 s with it (5 runs,
mean 0.87); `scripts/benchmark.py train` found the steady
step within 2% either way (`--grappler`, "uncompiled_grappler": Panoptic FPN
and UPSNet at 224x320; a ResNet-50 Panoptic-DeepLab at 513x1025). Inference
keeps Grappler: the ResNet-50 Panoptic-DeepLab's forward pass took 1145 ms
with it and 1270 ms without.
"""
import contextlib
import dataclasses
import os
import time
from typing import Callable, Dict, Optional

import keras
import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2.model import checkpoints
from deeplab2.model.meta import TOTAL_LOSS
from deeplab2.utils import distribute
from deeplab2.utils.progress import Progress
from deeplab2.utils.tracing import without_autograph


class NonFiniteLossError(RuntimeError):
    """Raised when a loss or a variable becomes NaN or Inf; nothing is saved
    after it, so the latest checkpoint stays the last finite one."""


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
    jit_compile: bool = False  # compile the replica step with XLA (see above)
    accumulation_steps: int = 1  # batches per optimizer update (see above)
    # Grappler on the step's graph (see above); None: off on hosts without
    # GPUs or TPUs, on otherwise.
    graph_optimization: Optional[bool] = None

    def __post_init__(self):
        if not isinstance(self.accumulation_steps, int) or self.accumulation_steps < 1:
            raise ValueError(f"accumulation_steps must be a positive integer, got "
                             f"{self.accumulation_steps!r}.")


def default_graph_optimization() -> bool:
    """`LoopOptions.graph_optimization` when None: on with GPUs or TPUs."""
    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


@contextlib.contextmanager
def _graph_optimization(enabled: bool):
    """Runs the functions called inside with Grappler on or off (TensorFlow
    keeps one instantiation per setting, so switching does not re-optimize)."""
    previous = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer",
                                                                   False)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": not enabled})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": previous})


def _runs_on_tpu(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.TPUStrategy)


def _non_finite(losses: Dict[str, tf.Tensor]) -> tf.Tensor:
    """1.0 if any loss is NaN or Inf, else 0.0."""
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in losses.values()])
    return 1.0 - tf.cast(finite, tf.float32)


class TrainLoop:
    """Runs distributed training with checkpoints, resumption and summaries."""

    def __init__(self, strategy: tf.distribute.Strategy, model: keras.Model,
                 loss_fn: Callable[[Dict, Dict], Dict[str, tf.Tensor]],
                 optimizer: keras.optimizers.Optimizer,
                 dataset_fn: Callable[[tf.distribute.InputContext, int], tf.data.Dataset],
                 model_dir: str, options: LoopOptions,
                 image_summary_fn: Optional[Callable[[], np.ndarray]] = None,
                 forward_fn: Optional[Callable[[keras.Model, Dict], Dict]] = None):
        self.strategy = strategy
        self.model = model
        self.loss_fn = loss_fn
        # (model, batch) -> outputs (`MetaArchitecture.training_outputs`);
        # default: the model on the batch's images.
        self.forward_fn = forward_fn or (
            lambda model, batch: model(batch[common.IMAGE], training=True))
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
            # Per replica (read locally in a replica step); not checkpointed.
            self._accumulators = [
                tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False,
                            name="gradient_accumulator",
                            synchronization=tf.VariableSynchronization.ON_READ,
                            aggregation=tf.VariableAggregation.SUM)
                for v in self.model.trainable_variables
            ] if options.accumulation_steps > 1 else []
            self._no_gradient = set()  # indices of variables without a gradient
        # Random-number states (dropout, drop path) are saved too, so that a
        # resumed run continues exactly where the interrupted one stopped.
        rng_states = [v for v in self.model.variables if "seed_generator" in v.path]
        self.checkpoint = tf.train.Checkpoint(step=self.step, model=self.model,
                                              optimizer=self.optimizer,
                                              rng_states=rng_states)
        self.is_chief = distribute.is_chief(strategy)
        directory = model_dir if self.is_chief else os.path.join(
            model_dir, f".worker-{distribute.worker_id(strategy)}-tmp")
        if not self.is_chief and tf.io.gfile.exists(directory):
            # Left by a killed run of this worker; only this worker writes it.
            tf.io.gfile.rmtree(directory)
            print(f"Removed {directory}, left by an interrupted run of this worker.",
                  flush=True)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, directory, max_to_keep=options.keep_checkpoints,
            step_counter=self.step)
        self.preemption = None
        if isinstance(strategy, (tf.distribute.MultiWorkerMirroredStrategy,
                                 tf.distribute.TPUStrategy)):
            self.preemption = tf.distribute.experimental.PreemptionCheckpointHandler(
                strategy.cluster_resolver, self.manager)
        self._loops = {}
        self._step_function = None
        self._variables_finite = None
        self.graph_optimization = (default_graph_optimization()
                                   if options.graph_optimization is None
                                   else options.graph_optimization)

    def variables_finite(self) -> bool:
        """Whether every floating-point variable of the model and the optimizer
        is finite (one fused reduction; checked before anything is saved)."""
        if self._variables_finite is None:
            variables = [v for v in self.model.variables + self.optimizer.variables
                         if tf.as_dtype(v.dtype).is_floating]

            @tf.function
            def all_finite():
                return tf.reduce_all(tf.stack(
                    [tf.reduce_all(tf.math.is_finite(v)) for v in variables]))

            self._variables_finite = all_finite
        return bool(self._variables_finite().numpy())

    def _stop(self, what: str, losses) -> None:
        """Raises NonFiniteLossError: `what` (ending in an open parenthesis
        that the losses close), that nothing was saved, and what to try."""
        values = {k: float(v.numpy()) for k, v in losses.items()}
        raise NonFiniteLossError(
            f"{what}: {values}). Training stopped; the last good checkpoint in "
            f"{self.model_dir} is untouched. Lower the learning rate or check the data.")

    def restore(self) -> int:
        """Restores the latest checkpoint in model_dir, if any; returns the step.

        A checkpoint without optimizer state (an imported or exported model
        directory) restores the model and step; the optimizer starts fresh.
        """
        latest = tf.train.latest_checkpoint(self.model_dir)
        if not latest:
            return int(self.step.numpy())
        reader = tf.train.load_checkpoint(latest)
        report = checkpoints.compare(
            checkpoints.checkpoint_variables(self.model, "model"), latest, reader)
        if report.missing or report.mismatched:
            raise checkpoints.CheckpointError(
                f"cannot resume: the checkpoint does not fit the model: {report.details()}")
        has_optimizer = any(key.startswith("optimizer/")
                            for key in reader.get_variable_to_shape_map())
        checkpoint = (self.checkpoint if has_optimizer else
                      tf.train.Checkpoint(step=self.step, model=self.model))
        checkpoint.restore(latest).expect_partial().assert_existing_objects_matched()
        print(f"Resumed at step {int(self.step.numpy())}: {report.summary()}"
              + ("" if has_optimizer else "; no optimizer state, starting it fresh"),
              flush=True)
        return int(self.step.numpy())

    def _gradients(self, inputs):
        """Forward pass, per-replica losses (summed over this replica's images
        and divided by the images of a step, global batch * accumulation
        steps) and their gradients."""
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            outputs = without_autograph(self.forward_fn)(self.model, inputs)
            # Sum / images per update, as tf.nn.compute_average_loss, without
            # its assertion (string constants have no place in a compiled step).
            scale = 1.0 / (self.options.global_batch_size * self.options.accumulation_steps)
            losses = {name: tf.reduce_sum(tf.cast(value, tf.float32)) * scale
                      for name, value in without_autograph(self.loss_fn)(inputs,
                                                                          outputs).items()}
            scaled = self.optimizer.scale_loss(losses[TOTAL_LOSS])
        return losses, tape.gradient(scaled, variables)

    def _update(self, grads):
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        self.step.assign_add(1)

    def _compiles_whole_step(self) -> bool:
        """Whether XLA compiles the update with the gradients (one replica)."""
        return (self.options.jit_compile and not _runs_on_tpu(self.strategy)
                and self.strategy.num_replicas_in_sync == 1)

    def _accumulate(self, grads):
        # A variable the loss does not reach has no gradient: recorded (when
        # the micro-step is traced, before the update) so that the update
        # leaves it out, as an update without accumulation does.
        self._no_gradient = {i for i, grad in enumerate(grads) if grad is None}
        for accumulator, grad in zip(self._accumulators, grads):
            if grad is not None:
                accumulator.assign_add(grad)

    def _gradients_accumulated(self, inputs):
        losses, grads = self._gradients(inputs)
        self._accumulate(grads)
        return losses

    def _update_accumulated(self):
        """The update with this replica's accumulated gradients, then zeroes them."""
        self._update([None if i in self._no_gradient else tf.identity(a)
                      for i, a in enumerate(self._accumulators)])
        for accumulator in self._accumulators:
            accumulator.assign(tf.zeros_like(accumulator))

    def _replica_micro_step(self, inputs):
        """Adds the gradients of this replica's part of one batch to its
        accumulators; returns its losses and a 0/1 flag of non-finite losses."""
        inputs = {k: v for k, v in inputs.items() if v.dtype != tf.string}
        if not self.options.jit_compile or _runs_on_tpu(self.strategy):
            losses = self._gradients_accumulated(inputs)
        elif self._compiles_whole_step():
            losses = tf.function(self._gradients_accumulated, jit_compile=True)(inputs)
        else:
            # As in _replica_step: the collectives-free part, per device.
            losses, grads = tf.function(self._gradients, jit_compile=True)(inputs)
            self._accumulate(grads)
        return losses, _non_finite(losses)

    def _replica_update(self):
        if self._compiles_whole_step():
            tf.function(self._update_accumulated, jit_compile=True)()
        else:
            self._update_accumulated()

    def _replica_step(self, inputs):
        """One step on this replica's batch; returns its losses and a 0/1 flag
        of non-finite losses."""
        # XLA compiles numbers only: leave out the image ids.
        inputs = {k: v for k, v in inputs.items() if v.dtype != tf.string}
        if not self.options.jit_compile or _runs_on_tpu(self.strategy):
            losses, grads = self._gradients(inputs)
            self._update(grads)
        elif self._compiles_whole_step():
            def whole_step(inputs):
                losses, grads = self._gradients(inputs)
                self._update(grads)
                return losses
            losses = tf.function(whole_step, jit_compile=True)(inputs)
        else:
            # A new function per replica trace: one XLA computation per device.
            losses, grads = tf.function(self._gradients, jit_compile=True)(inputs)
            self._update(grads)
        return losses, _non_finite(losses)

    def _build_step(self):
        """The tf.function of one step (all micro-steps and the update) on a
        distributed iterator; returns its losses and whether they are finite.
        Shared by the loops of every size: the step, most of a run's start-up
        time, is traced (and compiled) once."""
        strategy = self.strategy

        def reduced(replica_fn, iterator):
            losses, non_finite = strategy.run(replica_fn, args=(next(iterator),))
            losses = {k: strategy.reduce("SUM", v, axis=None) for k, v in losses.items()}
            return losses, strategy.reduce("SUM", non_finite, axis=None)

        # A function of its own: called before and inside the loop below, it
        # is traced once.
        @tf.function
        def micro_step(iterator):
            return reduced(self._replica_micro_step, iterator)

        @tf.function
        def one_step(iterator):
            if not self._accumulators:
                losses, non_finite = reduced(self._replica_step, iterator)
                return losses, non_finite == 0
            losses, non_finite = micro_step(iterator)
            for _ in tf.range(self.options.accumulation_steps - 1):
                more, more_non_finite = micro_step(iterator)
                losses = {k: v + more[k] for k, v in losses.items()}
                non_finite += more_non_finite
            strategy.run(self._replica_update)
            return losses, non_finite == 0

        return one_step

    def _build_loop(self, num_steps_in_loop: int):
        if self._step_function is None:
            self._step_function = self._build_step()
        one_step = self._step_function

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

    def loop_function(self, num_steps_in_loop: int):
        """The tf.function running `num_steps_in_loop` steps on a distributed
        iterator (built once per size; inspect its graph with
        `.get_concrete_function(iterator)`)."""
        if num_steps_in_loop not in self._loops:
            self._loops[num_steps_in_loop] = self._build_loop(num_steps_in_loop)
        return self._loops[num_steps_in_loop]

    def run_loop(self, num_steps_in_loop: int, iterator):
        """Runs `loop_function(num_steps_in_loop)` on `iterator` with the
        loop's graph optimization; returns (losses, all finite, first bad step)."""
        with _graph_optimization(self.graph_optimization):
            return self.loop_function(num_steps_in_loop)(iterator)

    def data_iterator(self, start_step: int):
        """The data stream of the steps from `start_step` on: `dataset_fn`
        is given the batches consumed before it (start_step *
        accumulation_steps) and skips them, so a run resumed at a checkpoint
        sees the batches an uninterrupted run sees."""
        start_batch = start_step * self.options.accumulation_steps
        return iter(self.strategy.distribute_datasets_from_function(
            lambda ctx: self.dataset_fn(ctx, start_batch)))

    def train(self, until_step: Optional[int] = None) -> Dict[str, float]:
        """Trains from the current step to `until_step` (default `num_steps`)
        and saves a checkpoint there; returns the last losses."""
        opts = self.options
        end = min(until_step or opts.num_steps, opts.num_steps)
        start = self.restore()
        if start >= end:
            print(f"Already trained to step {start}.")
            return {}
        iterator = self.data_iterator(start)
        writer = tf.summary.create_file_writer(os.path.join(self.model_dir, "train")) \
            if self.is_chief else tf.summary.create_noop_writer()
        progress = Progress(end - start, desc="train", unit="step")
        step = start
        last = {}
        while step < end:
            n = min(opts.steps_per_loop, end - step)
            # Never cross a checkpoint boundary inside one loop.
            n = min(n, opts.checkpoint_every - step % opts.checkpoint_every)
            tick = time.monotonic()
            losses, finite, first_bad = self.run_loop(n, iterator)
            finite = bool(finite.numpy())
            elapsed = time.monotonic() - tick
            if not finite:
                self._stop(f"Loss became NaN or Inf at step {int(first_bad.numpy())} "
                           f"(losses at step {int(self.step.numpy())}", losses)
            if not self.variables_finite():
                self._stop(f"Weights became NaN or Inf by step {int(self.step.numpy())} "
                           "(last losses", losses)
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
                                      n * opts.global_batch_size * opts.accumulation_steps
                                      / max(elapsed, 1e-9))
            if (self.image_summary_fn is not None and opts.image_summary_every
                    and (step % opts.image_summary_every < n or step == end)):
                with writer.as_default(step=step):
                    tf.summary.image("predictions", self.image_summary_fn(), max_outputs=4)
            if step % opts.checkpoint_every == 0 or step == end:
                self.manager.save(checkpoint_number=step)
            elif self.preemption is not None:
                self.preemption.save_checkpoint_if_preempted()
        progress.close()
        writer.flush()
        if not self.is_chief:  # a worker's own checkpoints only served the collectives
            tf.io.gfile.rmtree(self.manager.directory)
        return last
