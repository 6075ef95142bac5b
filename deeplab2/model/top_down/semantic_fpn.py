"""Semantic branch of Panoptic FPN on the feature pyramid (SPEC_TOP_DOWN.md section 2).

Each of P2..P5 goes through stages of 3x3 conv (no bias) + GroupNorm + ReLU +
bilinear x2 upsampling until it reaches stride 4 (P5 3 stages, P4 2, P3 1; P2
one stage without upsampling). The four stride-4 maps are summed, a 1x1 conv
predicts class logits and a bilinear x4 upsampling brings them to the input
resolution. Resizes are half-pixel (align_corners=False). The convs start from
He normal (fan out) and the predictor from N(0, 0.001), detectron2's init [std];
the predictor's bias starts at 0.
"""
import keras
import tensorflow as tf
from keras import ops

from deeplab2.model.layers import tracking

# Pyramid levels the branch reads: "p<l>" at stride 2**l.
INPUT_LEVELS = (2, 3, 4, 5)
# The level of each stage, in stage order: one stage per x2 to stride 4, and a
# single stage without upsampling on P2.
STAGE_LEVELS = tuple(level for level in INPUT_LEVELS for _ in range(max(level - 2, 1)))
# Stride of the summed maps, upsampled by as much to the input resolution.
OUTPUT_STRIDE = 4


def _he_normal_fan_out():
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


def upsample(x, factor):
    """Bilinear, half-pixel resize of [B, H, W, C] `x` to [B, factor * H, factor * W, C].

    `tf.image.resize`, which `ops.image.resize` calls, directly: the latter
    refuses sizes unknown when tracing (an exported model). The result keeps
    `x`'s dtype (the resize computes bfloat16 maps in float32).
    """
    height, width = ops.shape(x)[1], ops.shape(x)[2]
    resized = tf.image.resize(x, (factor * height, factor * width), method="bilinear")
    return tf.cast(resized, x.dtype)


def level_shapes(input_shape, owner: str):
    """{l: shape} of pyramid levels P2..P5 of a head's input shape dict;
    ValueError naming `owner` unless level l is exactly 2**(l - 2) times
    smaller than P2 where sizes are known."""
    shapes = {level: tuple(input_shape[f"p{level}"]) for level in INPUT_LEVELS}
    for level, shape in shapes.items():
        scale = 2 ** (level - 2)
        for p2, n in zip(shapes[2][1:3], shape[1:3]):
            if p2 is not None and n is not None and p2 != scale * n:
                raise ValueError(
                    f"{owner} needs p{level} exactly {scale} times smaller than p2 (inputs "
                    f"padded to a multiple of 32); got p2 {shapes[2]} and p{level} {shape}")
    return shapes


@keras.saving.register_keras_serializable(package="deeplab2")
class SemanticFPN(keras.layers.Layer):
    """Predicts semantic logits from FPN levels P2..P5.

    Call with the FPN's output dict (only "p2".."p5" are read; `fpn.FPN`
    also returns "p6"). Level l must be exactly 2**(l - 2) times smaller than
    P2 (true for inputs padded to a multiple of 32). Returns logits
    [B, 4 * H2, 4 * W2, num_classes] for a P2 of H2 x W2.

    Args:
        num_classes: classes predicted (COCO 53 stuff + 'other', Cityscapes 19).
        channels: width of every stage conv (128).
        groups: GroupNorm groups; must divide `channels` (32).
    """

    def __init__(self, num_classes, channels=128, groups=32, **kwargs):
        super().__init__(**kwargs)
        if channels % groups:
            raise ValueError(f"channels ({channels}) must be a multiple of groups ({groups}).")
        self.num_classes = num_classes
        self.channels = channels
        self.groups = groups
        names = [f"p{level}_stage{STAGE_LEVELS[:i + 1].count(level)}"
                 for i, level in enumerate(STAGE_LEVELS)]
        self.convs = [
            keras.layers.Conv2D(channels, 3, padding="same", use_bias=False,
                                kernel_initializer=_he_normal_fan_out(), name=f"{name}_conv")
            for name in names]
        self.norms = [keras.layers.GroupNormalization(groups, epsilon=1e-5, name=f"{name}_norm")
                      for name in names]
        tracking.track_for_checkpoint(self, self.convs + self.norms)
        self.predictor = keras.layers.Conv2D(
            num_classes, 1, name="predictor",
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.001))

    def build(self, input_shape):
        shapes = level_shapes(input_shape, "SemanticFPN")
        for level, conv, norm in zip(STAGE_LEVELS, self.convs, self.norms):
            conv.build(shapes[level])
            shapes[level] = shapes[level][:3] + (self.channels,)
            norm.build(shapes[level])
        self.predictor.build(shapes[2])

    def compute_output_shape(self, input_shape):
        batch, height, width = tuple(input_shape["p2"])[:3]
        height, width = (None if n is None else OUTPUT_STRIDE * n for n in (height, width))
        return (batch, height, width, self.num_classes)

    def call(self, features):
        maps = {level: features[f"p{level}"] for level in INPUT_LEVELS}
        for level, conv, norm in zip(STAGE_LEVELS, self.convs, self.norms):
            x = ops.relu(norm(conv(maps[level])))
            maps[level] = upsample(x, 2) if level > 2 else x
        return upsample(self.predictor(sum(maps.values())), OUTPUT_STRIDE)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, channels=self.channels,
                      groups=self.groups)
        return config
