"""Feature Pyramid Network neck: backbone features C2..C5 -> P2..P6.

SPEC_TOP_DOWN.md section 1: 1x1 laterals (with bias) on C2..C5, a top-down
pathway of nearest x2 upsampling + add, a 3x3 conv (with bias) per level
giving P2..P5, and P6 = max pool with kernel 1 and stride 2 of P5 (for the
RPN). No normalization.

With `global_context` (UPSNet on COCO, paper 001 section 4.1), the global
average of C5 goes through a fully connected layer to `channels` and is added
to the P5 lateral before the top-down pathway and P5's 3x3 conv.
"""
import collections

import keras
from keras import ops

from deeplab2.model.layers import tracking

# Backbone levels the FPN reads: "res<l>" at stride 2**l (output_stride 32).
INPUT_LEVELS = (2, 3, 4, 5)
# Pyramid levels it returns: "p<l>" at stride 2**l.
OUTPUT_LEVELS = (2, 3, 4, 5, 6)

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
    Returns {"p2": ..., "p6": ...}, each [B, ceil(H / 2**l), ceil(W / 2**l),
    channels] for an input image of H x W; `output_specs()` gives the
    channels and stride of each level.

    Args:
        channels: channels of every lateral and output conv (256).
        global_context: add a fully connected projection of C5's global
            average to the P5 lateral (UPSNet on COCO).
    """

    def __init__(self, channels=256, global_context=False, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.global_context = global_context
        self.context_fc = (keras.layers.Dense(channels, kernel_initializer=_KERNEL_INITIALIZER,
                                              name="global_context")
                           if global_context else None)
        self.lateral_convs = [
            keras.layers.Conv2D(channels, 1, kernel_initializer=_KERNEL_INITIALIZER,
                                name=f"lateral{level}")
            for level in INPUT_LEVELS]
        self.output_convs = [
            keras.layers.Conv2D(channels, 3, padding="same",
                                kernel_initializer=_KERNEL_INITIALIZER,
                                name=f"output{level}")
            for level in INPUT_LEVELS]
        tracking.track_for_checkpoint(self, self.lateral_convs + self.output_convs)

    def output_specs(self):
        """{"p<l>": LevelSpec(channels, stride=2**l)} for every output level."""
        return {f"p{level}": LevelSpec(self.channels, 2 ** level)
                for level in OUTPUT_LEVELS}

    def build(self, input_shape):
        keys = [f"res{level}" for level in INPUT_LEVELS]
        for fine, coarse in zip(keys, keys[1:]):
            _check_halving(input_shape[fine], input_shape[coarse], fine, coarse)
        for key, lateral, output in zip(keys, self.lateral_convs, self.output_convs):
            shape = tuple(input_shape[key])
            lateral.build(shape)
            output.build(shape[:3] + (self.channels,))
        if self.context_fc is not None:
            self.context_fc.build((input_shape["res5"][0], input_shape["res5"][-1]))

    def compute_output_shape(self, input_shape):
        shapes = {}
        for level in INPUT_LEVELS:
            shape = tuple(input_shape[f"res{level}"])
            shapes[f"p{level}"] = shape[:3] + (self.channels,)
        batch, height, width, _ = shapes["p5"]
        half = [None if n is None else (n + 1) // 2 for n in (height, width)]
        shapes["p6"] = (batch, *half, self.channels)
        return shapes

    def call(self, features):
        outputs = {}
        merged = None
        for level, lateral, output in reversed(list(zip(
                INPUT_LEVELS, self.lateral_convs, self.output_convs))):
            x = lateral(features[f"res{level}"])
            if self.context_fc is not None and level == INPUT_LEVELS[-1]:
                context = self.context_fc(ops.mean(features[f"res{level}"], axis=(1, 2)))
                x = x + context[:, None, None, :]
            if merged is not None:
                x = x + upsample_like(merged, x)
            merged = x
            outputs[f"p{level}"] = output(merged)
        # Max pooling with kernel 1 is subsampling.
        outputs["p6"] = outputs["p5"][:, ::2, ::2, :]
        return {key: outputs[key] for key in sorted(outputs)}

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, global_context=self.global_context)
        return config
