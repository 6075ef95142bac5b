"""Drop path (stochastic depth) for residual branches.

During training each example's residual branch is kept with probability
`survival_rate` and scaled by `1 / survival_rate`, so its expectation is
unchanged; at inference the layer is the identity.
"""
import keras
from keras import ops

SCHEDULES = ("constant", "linear")


def survival_rate(final_rate, schedule, stage, num_stages):
    """Survival rate of the blocks of `stage` (1-based) out of `num_stages`.

    "constant" gives every stage `final_rate`; "linear" decays from 1 before
    the first stage to `final_rate` at stage `num_stages`, as in the
    reference configs (`1 - (1 - final_rate) * stage / num_stages`).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown drop path schedule {schedule!r}; "
                         f"expected one of {SCHEDULES}")
    if not 0.0 < final_rate <= 1.0:
        raise ValueError(f"survival rate must be in (0, 1], got {final_rate}")
    if schedule == "constant":
        return float(final_rate)
    return 1.0 - (1.0 - final_rate) * stage / num_stages


@keras.saving.register_keras_serializable(package="deeplab2")
class DropPath(keras.layers.Layer):
    """Keeps each example's input with probability `survival_rate`.

    Args:
        survival_rate: probability of keeping the path, in (0, 1].
        seed: optional seed of the random generator.
    """

    def __init__(self, survival_rate=0.8, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < survival_rate <= 1.0:
            raise ValueError(
                f"survival rate must be in (0, 1], got {survival_rate}")
        self.survival_rate = float(survival_rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, inputs, training=None):
        if not training or self.survival_rate == 1.0:
            return inputs
        mask_shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        keep = keras.random.uniform(mask_shape, seed=self.seed_generator,
                                    dtype=inputs.dtype) < self.survival_rate
        return inputs * ops.cast(keep, inputs.dtype) / self.survival_rate

    def get_config(self):
        config = super().get_config()
        config.update(survival_rate=self.survival_rate, seed=self.seed)
        return config
