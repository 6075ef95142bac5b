"""Region proposal head shared by every FPN level (SPEC_TOP_DOWN.md section 1).

A 3x3 conv + ReLU, then 1x1 convs predicting A objectness logits and 4A box
deltas per position; every kernel starts from N(0, 0.01), every bias at 0.
Seamless (SPEC section 4) normalizes the 3x3 conv (no bias then) and uses
LeakyReLU.
"""
import keras
from keras import ops

from deeplab2.model.layers import activations
from deeplab2.model.top_down import normalization as norms


def _conv(filters, kernel_size, name, **options):
    """A "same" conv with kernel N(0, 0.01) and zero bias."""
    return keras.layers.Conv2D(
        filters, kernel_size, padding="same", name=name,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01), **options)


def _flat_size(shape, num_anchors):
    """Number of anchors of a [B, H, W, C] map, None if H or W is unknown."""
    if shape[1] is None or shape[2] is None:
        return None
    return shape[1] * shape[2] * num_anchors


@keras.saving.register_keras_serializable(package="deeplab2")
class RPNHead(keras.layers.Layer):
    """Objectness logits and box deltas for every anchor of every level.

    Call with a dict level -> [B, H, W, C] (the same C everywhere, e.g. the
    FPN's P2..P6). Returns {"logits": {level: [B, H*W*A]},
    "deltas": {level: [B, H*W*A, 4]}}, flattened in (row, column, anchor)
    order (the order of the anchors); an anchor's deltas are
    (dx, dy, dw, dh).

    Args:
        num_anchors: A, anchors per position (3 aspect ratios).
        channels: channels of the shared 3x3 conv.
        normalization: after the 3x3 conv (`top_down.normalization`; None).
        activation: after it ("relu"; "leaky_relu" for Seamless).
        bn_momentum, bn_epsilon: of "batch_norm".
    """

    def __init__(self, num_anchors=3, channels=256, normalization=None, activation="relu",
                 bn_momentum=norms.BN_MOMENTUM, bn_epsilon=norms.EPSILON, **kwargs):
        super().__init__(**kwargs)
        norms.check(normalization, "RPNHead")
        self.num_anchors = num_anchors
        self.channels = channels
        self.normalization = normalization
        self.activation = activation
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self._act = activations.get(activation)
        self.conv = _conv(channels, 3, "conv", use_bias=normalization is None)
        self.norm = norms.norm_layer(normalization, "norm", channels, bn_momentum, bn_epsilon)
        self.objectness = _conv(num_anchors, 1, "objectness")
        self.box_deltas = _conv(4 * num_anchors, 1, "box_deltas")

    def build(self, input_shape):
        channels = {shape[-1] for shape in input_shape.values()}
        if len(channels) != 1:
            raise ValueError(f"RPNHead is shared by all levels, which need the "
                             f"same channels; got {dict(input_shape)}")
        shape = tuple(next(iter(input_shape.values())))
        self.conv.build(shape)
        hidden = shape[:3] + (self.channels,)
        if self.norm is not None:
            self.norm.build(hidden)
        self.objectness.build(hidden)
        self.box_deltas.build(hidden)

    def compute_output_shape(self, input_shape):
        sizes = {level: (shape[0], _flat_size(shape, self.num_anchors))
                 for level, shape in input_shape.items()}
        return {"logits": sizes,
                "deltas": {level: size + (4,) for level, size in sizes.items()}}

    def call(self, features):
        logits, deltas = {}, {}
        for level, x in features.items():
            hidden = self.conv(x)
            hidden = self._act(hidden if self.norm is None else self.norm(hidden))
            batch = ops.shape(x)[0]
            logits[level] = ops.reshape(self.objectness(hidden), (batch, -1))
            deltas[level] = ops.reshape(self.box_deltas(hidden), (batch, -1, 4))
        return {"logits": logits, "deltas": deltas}

    def get_config(self):
        config = super().get_config()
        config.update(num_anchors=self.num_anchors, channels=self.channels,
                      normalization=self.normalization, activation=self.activation,
                      bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon)
        return config
