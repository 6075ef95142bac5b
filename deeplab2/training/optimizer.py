"""The optimizer: Adam or SGD with momentum, on a poly or a step-decay
learning-rate schedule, both with an optional linear warmup.

Adam on a poly schedule is the bottom-up (Panoptic-DeepLab) recipe; SGD with
momentum on step decay, with an L2 penalty as weight decay, is the top-down
(Mask R-CNN style) one. The schedules
are evaluated at `optimizer.iterations`, the number of updates done so far.

Both are Keras' optimizers (same variables, checkpoints and formulas) whose
per-variable update is TensorFlow's fused training op (`ResourceApplyAdam`,
`ResourceApplyKerasMomentum`, `ResourceApplyGradientDescent`, which XLA and
TPUs compile too) instead of Keras' chain of element-wise ops: Keras' Adam
put 36 graph nodes per variable into the training step, about half of a
small model's step graph, and tracing and graph optimization time grow with
it.
"""
from typing import Optional, Sequence

import gin
import keras
import tensorflow as tf

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("poly", "step")


def _warmup_factor(step, warmup_steps: int, start_factor: float):
    """The linear warmup's multiplier at `step` (float32): `start_factor` at
    step 0, rising to 1 at `warmup_steps` and staying there (detectron2's
    "linear" warmup)."""
    fraction = tf.minimum(step / float(warmup_steps), 1.0)
    return start_factor + (1.0 - start_factor) * fraction


@keras.saving.register_keras_serializable(package="deeplab2")
class PolyWithWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) = base * (1 - step / decay_steps) ** power, after a linear warmup.

    During the first `warmup_steps` the rate rises linearly from
    `base * warmup_start_factor` to the poly value; after `decay_steps` it stays
    at `end_learning_rate`.
    """

    def __init__(self, base_learning_rate: float, decay_steps: int, power: float = 0.9,
                 end_learning_rate: float = 0.0, warmup_steps: int = 0,
                 warmup_start_factor: float = 0.0):
        if decay_steps <= 0:
            raise ValueError(f"decay_steps must be positive, got {decay_steps}.")
        self.base_learning_rate = base_learning_rate
        self.decay_steps = decay_steps
        self.power = power
        self.end_learning_rate = end_learning_rate
        self.warmup_steps = warmup_steps
        self.warmup_start_factor = warmup_start_factor

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        progress = tf.minimum(step / float(self.decay_steps), 1.0)
        poly = ((self.base_learning_rate - self.end_learning_rate)
                * tf.pow(1.0 - progress, self.power) + self.end_learning_rate)
        if not self.warmup_steps:
            return poly
        return poly * _warmup_factor(step, self.warmup_steps, self.warmup_start_factor)

    def get_config(self):
        return dict(base_learning_rate=self.base_learning_rate, decay_steps=self.decay_steps,
                    power=self.power, end_learning_rate=self.end_learning_rate,
                    warmup_steps=self.warmup_steps,
                    warmup_start_factor=self.warmup_start_factor)


@keras.saving.register_keras_serializable(package="deeplab2")
class StepDecayWithWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) = base * decay_factor ** (number of boundaries <= step), times a
    linear warmup factor (detectron2's WarmupMultiStepLR).

    The rate drops at each boundary: step `b - 1` has the old rate, step `b`
    the new one. During the first `warmup_steps` the rate is multiplied by a
    factor rising linearly from `warmup_start_factor` to 1.
    """

    def __init__(self, base_learning_rate: float, boundaries: Sequence[int] = (),
                 decay_factor: float = 0.1, warmup_steps: int = 0,
                 warmup_start_factor: float = 0.0):
        boundaries = [int(b) for b in boundaries]
        if any(b <= 0 for b in boundaries) or any(
                a >= b for a, b in zip(boundaries, boundaries[1:])):
            raise ValueError(f"boundaries must be increasing positive steps, got {boundaries}.")
        self.base_learning_rate = base_learning_rate
        self.boundaries = boundaries
        self.decay_factor = decay_factor
        self.warmup_steps = warmup_steps
        self.warmup_start_factor = warmup_start_factor

    def __call__(self, step):
        # The rates of the intervals, rounded once from Python floats.
        rates = tf.constant([self.base_learning_rate * self.decay_factor ** i
                             for i in range(len(self.boundaries) + 1)], tf.float32)
        boundaries = tf.constant(self.boundaries, tf.int64, [len(self.boundaries)])
        passed = tf.reduce_sum(tf.cast(tf.cast(step, tf.int64) >= boundaries, tf.int32))
        rate = tf.gather(rates, passed)
        if not self.warmup_steps:
            return rate
        return rate * _warmup_factor(tf.cast(step, tf.float32), self.warmup_steps,
                                     self.warmup_start_factor)

    def get_config(self):
        return dict(base_learning_rate=self.base_learning_rate,
                    boundaries=list(self.boundaries), decay_factor=self.decay_factor,
                    warmup_steps=self.warmup_steps,
                    warmup_start_factor=self.warmup_start_factor)


def _fusable(gradient, variable) -> bool:
    """Whether the fused op applies: a dense gradient and a TF resource variable."""
    return (not isinstance(gradient, tf.IndexedSlices)
            and isinstance(variable, tf.Variable) and hasattr(variable, "handle"))


@keras.saving.register_keras_serializable(package="deeplab2")
class FusedAdam(keras.optimizers.Adam):
    """Keras' Adam (same slots and formula: m += (g - m)(1 - b1),
    v += (g^2 - v)(1 - b2), w -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps))
    with one `ResourceApplyAdam` per variable."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or not _fusable(gradient, variable):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.constant(self.beta_1, dtype), tf.constant(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].handle,
            v=self._velocities[index].handle, beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, dtype),
            beta1=beta_1, beta2=beta_2, epsilon=tf.constant(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype))


@keras.saving.register_keras_serializable(package="deeplab2")
class FusedSGD(keras.optimizers.SGD):
    """Keras' SGD (m = momentum m - lr g; w += m, or with Nesterov
    w += momentum m - lr g; without momentum w -= lr g) with one fused
    training op per variable."""

    def update_step(self, gradient, variable, learning_rate):
        if not _fusable(gradient, variable):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        learning_rate, gradient = tf.cast(learning_rate, dtype), tf.cast(gradient, dtype)
        if self.momentum == 0:
            tf.raw_ops.ResourceApplyGradientDescent(var=variable.handle, alpha=learning_rate,
                                                    delta=gradient)
            return
        accumulator = self.momentums[self._get_variable_index(variable)]
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle, accum=accumulator.handle, lr=learning_rate, grad=gradient,
            momentum=tf.constant(self.momentum, dtype), use_nesterov=self.nesterov)


@keras.saving.register_keras_serializable(package="deeplab2")
class SGDWithL2(FusedSGD):
    """SGD with the papers' weight decay: an L2 penalty `l2 / 2 * |w|^2`,
    i.e. `l2 * w` added to the gradient before it enters the momentum (as in
    Caffe, PyTorch and detectron2), not Keras' decoupled decay.

    Normalization scales and offsets (`gamma`, `beta`) are not decayed
    (detectron2's WEIGHT_DECAY_NORM = 0).
    """

    def __init__(self, l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {l2}.")
        self.l2 = l2

    def update_step(self, gradient, variable, learning_rate):
        # The TF backend passes the tf.Variable, named "<path>/<name>:0".
        if self.l2 and variable.name.split(":")[0].rsplit("/", 1)[-1] not in _UNDECAYED:
            gradient = keras.ops.add(
                keras.ops.cast(gradient, variable.dtype),
                keras.ops.multiply(keras.ops.cast(self.l2, variable.dtype), variable))
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "l2": self.l2}


_UNDECAYED = ("gamma", "beta")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(f"build_optimizer.{message}")


@gin.configurable(denylist=["num_steps"])
def build_optimizer(num_steps: int, optimizer: str = "adam", learning_rate: float = 1e-3,
                    schedule: str = "poly", power: float = 0.9,
                    end_learning_rate: float = 0.0,
                    decay_boundaries: Sequence[int] = (), decay_factor: float = 0.1,
                    warmup_steps: int = 0, warmup_start_factor: float = 0.0,
                    beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                    momentum: float = 0.9, nesterov: bool = False,
                    weight_decay: Optional[float] = None,
                    l2_regularization: Optional[float] = None,
                    global_clipnorm: Optional[float] = None) -> keras.optimizers.Optimizer:
    """The optimizer of a run of `num_steps` updates.

    Args:
        num_steps: optimizer updates of the run (the poly schedule's length).
        optimizer: "adam" (beta_1, beta_2, epsilon) or "sgd" (momentum, nesterov).
        learning_rate: the base rate.
        schedule: "poly" (power, end_learning_rate; decays to
            end_learning_rate at num_steps) or "step" (the rate times
            decay_factor at each of decay_boundaries, steps in 1..num_steps).
        warmup_steps, warmup_start_factor: a linear warmup over the first
            warmup_steps from learning_rate * warmup_start_factor (detectron2:
            0.001; UPSNet: 0.1; Seamless: 1/3).
        weight_decay: Keras' decay, applied before each update as
            `w -= lr * weight_decay * w` (lr the scheduled rate), outside the
            gradient and momentum. For SGD without momentum this equals an L2
            penalty weight_decay / 2 * |w|^2 in the loss; with momentum m the
            papers' L2 (decay inside the momentum) decays about 1 / (1 - m)
            times more in steady state. None: no decay.
        l2_regularization: SGD only: the papers' weight decay (1e-4 in the
            top-down recipes), an L2 penalty in the gradient, before the
            momentum (`SGDWithL2`). None: none.
        global_clipnorm: clip the gradients' global norm (None: no clipping).
    """
    _check(optimizer in OPTIMIZERS,
           f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}.")
    _check(schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {schedule!r}.")
    _check(0.0 <= warmup_start_factor <= 1.0,
           f"warmup_start_factor must be in [0, 1], got {warmup_start_factor}.")
    _check(l2_regularization is None or optimizer == "sgd",
           f"l2_regularization applies to optimizer='sgd' only, got {optimizer!r}; "
           "Adam takes the decoupled weight_decay.")
    _check(l2_regularization is None or weight_decay is None,
           "give one of weight_decay (decoupled) and l2_regularization (in the "
           f"gradient), got both: {weight_decay} and {l2_regularization}.")
    _check(l2_regularization is None or l2_regularization >= 0,
           f"l2_regularization must be >= 0, got {l2_regularization}.")
    boundaries = list(decay_boundaries)
    if schedule == "step":
        _check(all(0 < b <= num_steps for b in boundaries)
               and all(a < b for a, b in zip(boundaries, boundaries[1:])),
               f"decay_boundaries must be increasing steps in 1..num_steps={num_steps}, "
               f"got {tuple(boundaries)}.")
        rates = StepDecayWithWarmup(learning_rate, boundaries, decay_factor, warmup_steps,
                                    warmup_start_factor)
    else:
        _check(not boundaries, "decay_boundaries apply to schedule='step' only, "
               f"got {tuple(boundaries)} with schedule='poly'.")
        rates = PolyWithWarmup(learning_rate, num_steps, power, end_learning_rate,
                               warmup_steps, warmup_start_factor)
    if optimizer == "sgd" and l2_regularization is not None:
        return SGDWithL2(l2=l2_regularization, learning_rate=rates, momentum=momentum,
                         nesterov=nesterov, global_clipnorm=global_clipnorm)
    if optimizer == "sgd":
        return FusedSGD(learning_rate=rates, momentum=momentum, nesterov=nesterov,
                        weight_decay=weight_decay, global_clipnorm=global_clipnorm)
    return FusedAdam(learning_rate=rates, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                     weight_decay=weight_decay, global_clipnorm=global_clipnorm)
