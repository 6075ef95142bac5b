"""Upsampling decoders: Panoptic-DeepLab's and the DeepLabV3+ variant.

Both repeat, per low-level feature (coarse to fine): project it with a
1x1 conv + BN + ReLU, upsample the running feature to its size (bilinear,
aligned corners), concatenate, and fuse with `fuse_num_convs` kxk convs
(depthwise-separable when `sep_conv`).

- Panoptic-DeepLab: stride-8 then stride-4 features, one 5x5 conv per stage;
  projections 64, 32 (semantic) and 32, 16 (instance).
- DeepLabV3+ (paper 000, Table 10): one stride-4 feature projected to 48
  (semantic) or 32 (instance) channels, two 3x3 convs. These widths give
  Table 10's 46.61 M parameters / 553.41 G multiply-adds with Xception-71.
"""
import keras
from keras import ops

from deeplab2.model.layers import convolutions
from deeplab2.model.layers import resize
from deeplab2.model.layers import tracking

# Fusion convs and default low-level projection widths of each variant.
VARIANTS = {
    "panoptic_deeplab": dict(fuse_kernel_size=5, fuse_num_convs=1,
                             semantic_low_level_channels=(64, 32),
                             instance_low_level_channels=(32, 16)),
    "deeplabv3plus": dict(fuse_kernel_size=3, fuse_num_convs=2,
                          semantic_low_level_channels=(48,),
                          instance_low_level_channels=(32,)),
}


@keras.saving.register_keras_serializable(package="deeplab2")
class Decoder(keras.layers.Layer):
    """Fuses a coarse feature with low-level features, coarse to fine.

    Call with `[coarse, low_level_0, low_level_1, ...]` (coarse to fine).

    Args:
        decoder_channels: output channels of every fusion stage.
        low_level_channels: 1x1 projection width of each low-level feature.
        fuse_kernel_size: kernel of the fusion convs.
        fuse_num_convs: fusion convs per stage.
        sep_conv: depthwise-separable fusion convs.
        bn_momentum, bn_epsilon, synchronized_bn: batch norm options.
    """

    def __init__(self, decoder_channels=256, low_level_channels=(64, 32),
                 fuse_kernel_size=5, fuse_num_convs=1, sep_conv=True,
                 bn_momentum=0.99, bn_epsilon=1e-3, synchronized_bn=True,
                 **kwargs):
        super().__init__(**kwargs)
        self.decoder_channels = decoder_channels
        self.low_level_channels = tuple(low_level_channels)
        self.fuse_kernel_size = fuse_kernel_size
        self.fuse_num_convs = fuse_num_convs
        self.sep_conv = sep_conv
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.synchronized_bn = synchronized_bn
        bn = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon,
                  synchronized_bn=synchronized_bn)
        self.projections = [
            convolutions.ConvBNAct(channels, 1, name=f"project{i}", **bn)
            for i, channels in enumerate(self.low_level_channels)]
        self.fusions = [
            [convolutions.conv_bn_act(decoder_channels, fuse_kernel_size,
                                      sep_conv, name=f"fuse{i}_{j}", **bn)
             for j in range(fuse_num_convs)]
            for i in range(len(self.low_level_channels))]
        tracking.track_for_checkpoint(
            self, self.projections + [conv for convs in self.fusions for conv in convs])

    def build(self, input_shape):
        coarse_shape, *low_shapes = input_shape
        channels = coarse_shape[-1]
        for projection, convs, low_shape, low_channels in zip(
                self.projections, self.fusions, low_shapes,
                self.low_level_channels):
            projection.build(low_shape)
            in_channels = channels + low_channels
            for conv in convs:
                conv.build(tuple(low_shape[:3]) + (in_channels,))
                in_channels = self.decoder_channels
            channels = self.decoder_channels

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[-1][:3]) + (self.decoder_channels,)

    def call(self, inputs, training=None):
        x, *low_levels = inputs
        if len(low_levels) != len(self.projections):
            raise ValueError(f"expected {len(self.projections)} low-level "
                             f"features, got {len(low_levels)}")
        for projection, convs, low in zip(self.projections, self.fusions,
                                          low_levels):
            low = projection(low, training=training)
            x = resize.resize_align_corners(x, ops.shape(low)[1:3])
            x = ops.concatenate([x, low], axis=-1)
            for conv in convs:
                x = conv(x, training=training)
        return x

    def get_config(self):
        config = super().get_config()
        config.update(
            decoder_channels=self.decoder_channels,
            low_level_channels=self.low_level_channels,
            fuse_kernel_size=self.fuse_kernel_size,
            fuse_num_convs=self.fuse_num_convs, sep_conv=self.sep_conv,
            bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
            synchronized_bn=self.synchronized_bn)
        return config
