"""Feature Pyramid Network neck: backbone features C2..C5 -> P2..P6.

SPEC_TOP_DOWN.md section 1: 1x1 laterals (with bias) on C2..C5, a top-down
pathway of nearest x2 upsampling + add, a 3x3 conv (with bias) per level
giving P2..P5, and P6 = max pool with kernel 1 and stride 2 of P5 (for the
RPN). No normalization.

Seamless (paper 002 section 3.1, SPEC section 4) normalizes and activates
after every conv (`normalization`, `activation`; the convs then have no
bias) and replaces P6 by `extra_levels` stride-2 3x3 convs: P6 from C5, each
next level from the one before (Cityscapes 1 level, Vistas 2: P6, P7). They
pad one pixel on every side, so output j is centred on input 2j, on the
anchor grid (TF's "same" would pad only after an even map and shift it).

With `global_context` (UPSNet on COCO, paper 001 section 4.1), the global
average of C5 goes through a fully connected layer to `channels` and is added
to the P5 lateral before the top-down pathway and P5's 3x3 conv.
"""
import collections

import keras
from keras import ops

from deeplab2.model.layers import activations, tracking
from deeplab2.model.layers.convolutions import fixed_padding
from deeplab2.model.top_down import normalization as norms

# Backbone levels the FPN reads: "res<l>" at stride 2**l (output_stride 32).
INPUT_LEVELS = (2, 3, 4, 5)
LevelSpec = collections.namedtuple("LevelSpec", ["channels", "stride"])

# Kaiming-uniform with a = 1, i.e. U(+-sqrt(3 / fan_in)), detectron2's FPN
# init [std]; biases start at zero.
_KERNEL_INITIALIZER = "lecun_uniform"


def upsample_like(x, reference):
    """Nearest x2 upsampling of `x`, cropped at the bottom/right to the
    height and width of `reference`.

    Backbones pad strided layers, so a map of size n lies under one of size
    m = ceil(n / 2). Output row i then reads row floor(i / 2), which for
    n in {2m - 1, 2m} equals a nearest resize to n reading row
    floor(i * m / n) (PyTorch's legacy "nearest").
    """
    x = ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2)
    height, width = ops.shape(reference)[1], ops.shape(reference)[2]
    return x[:, :height, :width, :]


def _check_halving(fine_shape, coarse_shape, fine_key, coarse_key):
    """Raises ValueError unless each known size n and ceil(n / 2) match."""
    for fine, coarse in zip(fine_shape[1:3], coarse_shape[1:3]):
        if fine is not None and coarse is not None and (
                not 2 * coarse - 1 <= fine <= 2 * coarse):
            raise ValueError(
                f"FPN needs features at strides 4, 8, 16, 32 (backbone "
                f"output_stride 32); got {fine_key} {tuple(fine_shape)} and "
                f"{coarse_key} {tuple(coarse_shape)}")


@keras.saving.register_keras_serializable(package="deeplab2")
class FPN(keras.layers.Layer):
    """Builds the feature pyramid P2..P6 from a backbone's feature dict.

    Call with the backbone's output dict (only "res2".."res5" are read).
    Returns {"p2": ..., "p6": ...} (up to "p<5 + extra_levels>"), each
    [B, ceil(H / 2**l), ceil(W / 2**l), channels] for an input image of
    H x W; `output_specs()` gives the channels and stride of each level.

    Args:
        channels: channels of every lateral and output conv (256).
        global_context: add a fully connected projection of C5's global
            average to the P5 lateral (UPSNet on COCO).
        normalization: after every conv (`top_down.normalization`; None).
        activation: after every conv and its normalization (None, or e.g.
            "leaky_relu").
        extra_levels: 0 for P6 subsampled from P5; n > 0 for n levels of
            stride-2 3x3 convs, the first on C5 (Seamless).
        bn_momentum, bn_epsilon: of "batch_norm".
    """

    def __init__(self, channels=256, global_context=False, normalization=None,
                 activation=None, extra_levels=0, bn_momentum=norms.BN_MOMENTUM,
                 bn_epsilon=norms.EPSILON, **kwargs):
        super().__init__(**kwargs)
        norms.check(normalization, "FPN")
        if not isinstance(extra_levels, int) or extra_levels < 0:
            raise ValueError(f"FPN extra_levels must be an integer >= 0, got {extra_levels!r}.")
        self.channels = channels
        self.global_context = global_context
        self.normalization = normalization
        self.activation = activation
        self.extra_levels = extra_levels
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self._act = activations.get(activation)
        self.context_fc = (keras.layers.Dense(channels, kernel_initializer=_KERNEL_INITIALIZER,
                                              name="global_context")
                           if global_context else None)

        def conv(kernel_size, name, strides=1):
            return keras.layers.Conv2D(channels, kernel_size, strides=strides,
                                       padding="same" if strides == 1 else "valid",
                                       use_bias=normalization is None,
                                       kernel_initializer=_KERNEL_INITIALIZER, name=name)

        self.lateral_convs = [conv(1, f"lateral{level}") for level in INPUT_LEVELS]
        self.output_convs = [conv(3, f"output{level}") for level in INPUT_LEVELS]
        self.extra_convs = [conv(3, f"extra{level}", strides=2)
                            for level in self._extra_level_numbers()]
        convs = self.lateral_convs + self.output_convs + self.extra_convs
        # The normalization of each conv, by the conv's name (None without).
        self._norm_of = {conv.name: norms.norm_layer(normalization, f"{conv.name}_norm",
                                                     channels, bn_momentum, bn_epsilon)
                         for conv in convs}
        tracking.track_for_checkpoint(
            self, convs + [norm for norm in self._norm_of.values() if norm is not None])

    def _extra_level_numbers(self):
        return tuple(range(INPUT_LEVELS[-1] + 1, INPUT_LEVELS[-1] + 1 + self.extra_levels))

    def output_levels(self):
        """The levels l of the returned "p<l>", lowest first."""
        return INPUT_LEVELS + (self._extra_level_numbers() or (INPUT_LEVELS[-1] + 1,))

    def output_specs(self):
        """{"p<l>": LevelSpec(channels, stride=2**l)} for every output level."""
        return {f"p{level}": LevelSpec(self.channels, 2 ** level)
                for level in self.output_levels()}

    def _normalized(self, conv, x):
        """conv (an extra level's padded by one pixel), then its normalization
        and the activation."""
        if conv.strides != (1, 1):
            x = ops.pad(x, ((0, 0),) + fixed_padding(3) + ((0, 0),))
        x = conv(x)
        norm = self._norm_of[conv.name]
        return self._act(x if norm is None else norm(x))

    def build(self, input_shape):
        keys = [f"res{level}" for level in INPUT_LEVELS]
        for fine, coarse in zip(keys, keys[1:]):
            _check_halving(input_shape[fine], input_shape[coarse], fine, coarse)
        shapes = {}
        for key, lateral, output in zip(keys, self.lateral_convs, self.output_convs):
            shape = tuple(input_shape[key])
            lateral.build(shape)
            output.build(shape[:3] + (self.channels,))
            shapes[lateral.name] = shape[:3] + (self.channels,)
            shapes[output.name] = shape[:3] + (self.channels,)
        shape = tuple(input_shape[keys[-1]])
        for extra in self.extra_convs:
            extra.build(shape[:1] + tuple(None if n is None else n + 2 for n in shape[1:3])
                        + shape[3:])  # padded by one pixel on every side
            shape = shape[:1] + tuple(None if n is None else (n + 1) // 2
                                      for n in shape[1:3]) + (self.channels,)
            shapes[extra.name] = shape
        for name, norm in self._norm_of.items():
            if norm is not None:
                norm.build(shapes[name])
        if self.context_fc is not None:
            self.context_fc.build((input_shape["res5"][0], input_shape["res5"][-1]))

    def compute_output_shape(self, input_shape):
        shapes = {}
        for level in INPUT_LEVELS:
            shape = tuple(input_shape[f"res{level}"])
            shapes[f"p{level}"] = shape[:3] + (self.channels,)
        batch, height, width, _ = shapes["p5"]
        for level in self.output_levels()[len(INPUT_LEVELS):]:
            height, width = [None if n is None else (n + 1) // 2 for n in (height, width)]
            shapes[f"p{level}"] = (batch, height, width, self.channels)
        return shapes

    def call(self, features):
        outputs = {}
        merged = None
        for level, lateral, output in reversed(list(zip(
                INPUT_LEVELS, self.lateral_convs, self.output_convs))):
            x = self._normalized(lateral, features[f"res{level}"])
            if self.context_fc is not None and level == INPUT_LEVELS[-1]:
                context = self.context_fc(ops.mean(features[f"res{level}"], axis=(1, 2)))
                x = x + context[:, None, None, :]
            if merged is not None:
                x = x + upsample_like(merged, x)
            merged = x
            outputs[f"p{level}"] = self._normalized(output, merged)
        if self.extra_convs:
            x = features[f"res{INPUT_LEVELS[-1]}"]
            for level, extra in zip(self._extra_level_numbers(), self.extra_convs):
                x = outputs[f"p{level}"] = self._normalized(extra, x)
        else:  # max pooling with kernel 1 is subsampling
            outputs["p6"] = outputs["p5"][:, ::2, ::2, :]
        return {f"p{level}": outputs[f"p{level}"] for level in self.output_levels()}

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, global_context=self.global_context,
                      normalization=self.normalization, activation=self.activation,
                      extra_levels=self.extra_levels, bn_momentum=self.bn_momentum,
                      bn_epsilon=self.bn_epsilon)
        return config
