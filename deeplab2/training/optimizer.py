"""Adam with a poly learning-rate schedule and optional linear warmup."""
from typing import Optional

import gin
import keras
import tensorflow as tf


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
        fraction = tf.minimum(step / float(self.warmup_steps), 1.0)
        factor = self.warmup_start_factor + (1.0 - self.warmup_start_factor) * fraction
        return poly * factor

    def get_config(self):
        return dict(base_learning_rate=self.base_learning_rate, decay_steps=self.decay_steps,
                    power=self.power, end_learning_rate=self.end_learning_rate,
                    warmup_steps=self.warmup_steps,
                    warmup_start_factor=self.warmup_start_factor)


@gin.configurable(denylist=["num_steps"])
def build_optimizer(num_steps: int, learning_rate: float = 1e-3, power: float = 0.9,
                    end_learning_rate: float = 0.0, warmup_steps: int = 0,
                    beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                    weight_decay: Optional[float] = None,
                    global_clipnorm: Optional[float] = None) -> keras.optimizers.Optimizer:
    """Adam (no weight decay by default) on a poly schedule over `num_steps`."""
    schedule = PolyWithWarmup(learning_rate, num_steps, power, end_learning_rate,
                              warmup_steps)
    return keras.optimizers.Adam(learning_rate=schedule, beta_1=beta_1, beta_2=beta_2,
                                 epsilon=epsilon, weight_decay=weight_decay,
                                 global_clipnorm=global_clipnorm)
