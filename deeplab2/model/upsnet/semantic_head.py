"""UPSNet's semantic head (paper 001 section 3.1; SPEC_TOP_DOWN.md section 3).

One subnet of deformable convolutions (DCN v1 with bias, each followed by a
ReLU, no normalization) whose weights are shared by P2..P5. Each level's
output is upsampled bilinearly (half-pixel) to stride 4, the four maps are
concatenated and a 1x1 convolution (N(0, 0.01)) predicts the logits X of every
semantic class, stuff and things, at stride 4. The panoptic head and the RoI
loss read X at stride 4; the semantic loss reads it upsampled x4 to the input.
Depth and widths per dataset: Cityscapes 256 -> 128 -> 128, COCO 256 -> 256 ->
128 -> 128 (the authors' code). The DCN kernels start from He normal (fan out)
[ours; the paper is silent].
"""
import keras
from keras import ops

from deeplab2.model.layers import tracking
from deeplab2.model.layers.deformable_conv import DeformableConv2D
from deeplab2.model.top_down.semantic_fpn import INPUT_LEVELS, level_shapes, upsample

# Stride of the logits it returns.
OUTPUT_STRIDE = 4


def _he_normal_fan_out():
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


@keras.saving.register_keras_serializable(package="deeplab2")
class UPSNetSemanticHead(keras.layers.Layer):
    """Predicts stride-4 semantic logits from FPN levels P2..P5.

    Call with the FPN's output dict (only "p2".."p5" are read); level l must be
    exactly 2**(l - 2) times smaller than P2. Returns logits [B, H2, W2,
    num_classes] for a P2 of H2 x W2.

    Args:
        num_classes: semantic classes, stuff and things (COCO 133, Cityscapes 19).
        channels: output channels of each shared DCN layer ((128, 128) on
            Cityscapes, (256, 128, 128) on COCO).
    """

    def __init__(self, num_classes, channels=(128, 128), **kwargs):
        super().__init__(**kwargs)
        if not channels:
            raise ValueError("UPSNetSemanticHead needs at least one DCN layer (channels).")
        self.num_classes = num_classes
        self.channels = tuple(channels)
        self.dcn_layers = [DeformableConv2D(width, 3, kernel_initializer=_he_normal_fan_out(),
                                            name=f"dcn{i + 1}")
                           for i, width in enumerate(self.channels)]
        tracking.track_for_checkpoint(self, self.dcn_layers)
        self.predictor = keras.layers.Conv2D(
            num_classes, 1, name="predictor",
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01))

    def build(self, input_shape):
        shape = level_shapes(input_shape, "UPSNetSemanticHead")[2]
        for layer in self.dcn_layers:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.predictor.build(shape[:3] + (len(INPUT_LEVELS) * self.channels[-1],))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape["p2"])[:3] + (self.num_classes,)

    def call(self, features):
        maps = []
        for level in INPUT_LEVELS:
            x = features[f"p{level}"]
            for layer in self.dcn_layers:
                x = ops.relu(layer(x))
            maps.append(upsample(x, 2 ** (level - 2)) if level > 2 else x)
        return self.predictor(ops.concatenate(maps, axis=-1))

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, channels=self.channels)
        return config
