"""What every backbone shares: the feature contract and output-stride logic.

A backbone maps a normalized image `[B, H, W, 3]` (`x / 127.5 - 1`) to a dict
of features: "res2" (stride 4), "res3" (stride 8), "res4" (stride 16) and
"res5" (the final feature, also under "final"), at `output_stride` 8, 16 or
32. Each "resN" is the last feature computed at stride 2**N before the
network downsamples again (as in DeepLab's decoder end points). Once the
requested output stride is reached, later strides become atrous rates.
"""
import keras
from keras import ops

from deeplab2.model.layers import tracking
from deeplab2.model.layers.convolutions import fixed_padding

FEATURE_KEYS = ("res2", "res3", "res4", "res5")
FINAL = "final"
OUTPUT_STRIDES = (8, 16, 32)


def check_output_stride(output_stride):
    """Raises ValueError unless `output_stride` is 8, 16 or 32."""
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, "
                         f"got {output_stride}")


def check_multi_grid(multi_grid, num_units):
    """Returns per-unit rate multipliers for the last `num_units` units."""
    if multi_grid is None:
        return (1,) * num_units
    multi_grid = tuple(int(rate) for rate in multi_grid)
    if not multi_grid or len(multi_grid) > num_units:
        raise ValueError(f"multi_grid needs 1..{num_units} rates, "
                         f"got {multi_grid}")
    return (1,) * (num_units - len(multi_grid)) + multi_grid


class StrideTracker:
    """Turns nominal strides into (stride, atrous rate) pairs.

    Ask once per spatial layer, in network order, with its nominal stride.
    Before the output stride is reached strides are kept; afterwards a
    strided layer runs at stride 1 with the current rate and every later
    layer uses the rate multiplied by that stride (TF-slim / DeepLab rule).
    """

    def __init__(self, output_stride):
        check_output_stride(output_stride)
        self.output_stride = output_stride
        self.stride = 1
        self.rate = 1

    def __call__(self, stride=1):
        if self.stride * stride <= self.output_stride:
            self.stride *= stride
            return stride, 1 if stride > 1 else self.rate
        rate = self.rate
        self.rate *= stride
        return 1, rate


@keras.saving.register_keras_serializable(package="deeplab2")
class MaxPool(keras.layers.Layer):
    """Strided max pooling with DeepLab's symmetric padding."""

    def __init__(self, pool_size=3, strides=2, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = pool_size
        self.strides = strides
        self._padding = fixed_padding(pool_size)

    def compute_output_shape(self, input_shape):
        def size(n):
            if n is None:
                return None
            padded = n + sum(self._padding[0])
            return (padded - self.pool_size) // self.strides + 1
        return (input_shape[0], size(input_shape[1]), size(input_shape[2]),
                input_shape[3])

    def call(self, inputs):
        x = ops.pad(inputs, ((0, 0),) + self._padding + ((0, 0),),
                    constant_values=float("-inf"))
        return ops.max_pool(x, self.pool_size, self.strides, padding="valid")

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size, strides=self.strides)
        return config


def build_chain(layers, input_shape):
    """Builds `layers` one after another; returns the final output shape."""
    shape = input_shape
    for layer in layers:
        layer.build(shape)
        shape = layer.compute_output_shape(shape)
    return shape


class Backbone(keras.Model):
    """Base class: subclasses fill `self.stages` and `feature_channels`.

    `self.stages` is a list of `(layers, feature_key)`; the output of the
    last layer of a stage is recorded under its key. A layer may return an
    `(output, feature)` pair (its `compute_output_shape` then returns a pair of
    shapes), in which case `feature` is what gets recorded, except for
    "res5", which is always the network's output.
    """

    def _track_stages(self):
        """Makes `tf.train.Checkpoint` see every stage layer (see tracking.py)."""
        tracking.track_for_checkpoint(
            self, [layer for layers, _ in self.stages for layer in layers])

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layers, _ in self.stages:
            for layer in layers:
                layer.build(shape)
                shape = layer.compute_output_shape(shape)
                if isinstance(shape[0], tuple):
                    shape = shape[0]

    def call(self, inputs, training=None):
        features = {}
        x = inputs
        for layers, key in self.stages:
            for layer in layers:
                x = layer(x, training=training)
                if isinstance(x, (tuple, list)):
                    x, feature = x
                else:
                    feature = x
            features[key] = x if key == "res5" else feature
        features[FINAL] = features["res5"]
        return features

    @property
    def feature_channels(self):
        """Channels of each feature key (including "final")."""
        channels = dict(self._feature_channels)
        channels[FINAL] = channels["res5"]
        return channels
