"""Squeeze-and-excitation with a hard-sigmoid (or sigmoid) gate.

`SqueezeExcite(squeeze_channels=None)` is the simplified SE of SWideRNet
(paper 004, Eq. 1): one fully connected layer (a 1x1 conv with bias) on the
globally average-pooled input, gated by `relu6(x + 3) / 6`. With
`squeeze_channels` set it is the two-layer SE of MobileNetV3 (reduce, ReLU,
expand, same gate). keras.applications' MobileNetV3 gates with the hard
sigmoid; google-research/deeplab2's with the sigmoid (`gate="sigmoid"`).
"""
import keras
from keras import ops


def hard_sigmoid(x):
    """`relu6(x + 3) / 6`."""
    return ops.relu6(x + 3.0) / 6.0


GATES = {"hard_sigmoid": hard_sigmoid, "sigmoid": ops.sigmoid}


@keras.saving.register_keras_serializable(package="deeplab2")
class SqueezeExcite(keras.layers.Layer):
    """Scales channels by a gate computed from their spatial mean.

    Args:
        squeeze_channels: width of the hidden layer; None for the simplified
            single-layer SE.
        kernel_initializer: initializer of the 1x1 convolutions.
        gate: "hard_sigmoid" or "sigmoid".
    """

    def __init__(self, squeeze_channels=None, kernel_initializer="he_normal",
                 gate="hard_sigmoid", **kwargs):
        super().__init__(**kwargs)
        if gate not in GATES:
            raise ValueError(f"SE gate must be one of {tuple(GATES)}, got {gate!r}")
        self.gate = gate
        self.squeeze_channels = squeeze_channels
        self.kernel_initializer = kernel_initializer
        self.reduce = None
        if squeeze_channels is not None:
            self.reduce = keras.layers.Conv2D(
                squeeze_channels, 1, kernel_initializer=kernel_initializer,
                name="reduce")
        self.expand = None

    def build(self, input_shape):
        channels = input_shape[-1]
        pooled = (input_shape[0], 1, 1, channels)
        self.expand = keras.layers.Conv2D(
            channels, 1, kernel_initializer=self.kernel_initializer,
            name="expand")
        if self.reduce is not None:
            self.reduce.build(pooled)
            pooled = (input_shape[0], 1, 1, self.squeeze_channels)
        self.expand.build(pooled)

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, inputs):
        gate = ops.mean(inputs, axis=(1, 2), keepdims=True)
        if self.reduce is not None:
            gate = ops.relu(self.reduce(gate))
        return inputs * GATES[self.gate](self.expand(gate))

    def get_config(self):
        config = super().get_config()
        config.update(squeeze_channels=self.squeeze_channels,
                      kernel_initializer=self.kernel_initializer, gate=self.gate)
        return config
