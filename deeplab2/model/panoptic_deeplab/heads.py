"""Prediction heads: kxk conv + BN + ReLU, then a 1x1 conv with bias."""
import keras

from deeplab2.model.layers import convolutions


@keras.saving.register_keras_serializable(package="deeplab2")
class PredictionHead(keras.layers.Layer):
    """Maps decoder features to `output_channels` logits / regressions.

    Args:
        output_channels: channels of the prediction (classes, 1 or 2).
        head_channels: channels of the kxk conv.
        kernel_size: kernel of the first conv (5 in Panoptic-DeepLab).
        sep_conv: depthwise-separable first conv.
        bn_momentum, bn_epsilon, synchronized_bn: batch norm options.
    """

    def __init__(self, output_channels, head_channels=256, kernel_size=5,
                 sep_conv=True, bn_momentum=0.99, bn_epsilon=1e-3,
                 synchronized_bn=True, **kwargs):
        super().__init__(**kwargs)
        self.output_channels = output_channels
        self.head_channels = head_channels
        self.kernel_size = kernel_size
        self.sep_conv = sep_conv
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.synchronized_bn = synchronized_bn
        self.conv = convolutions.conv_bn_act(
            head_channels, kernel_size, sep_conv, name="conv",
            bn_momentum=bn_momentum, bn_epsilon=bn_epsilon,
            synchronized_bn=synchronized_bn)
        self.classifier = keras.layers.Conv2D(
            output_channels, 1, use_bias=True, name="classifier")

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.classifier.build(tuple(input_shape[:3]) + (self.head_channels,))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3]) + (self.output_channels,)

    def call(self, inputs, training=None):
        return self.classifier(self.conv(inputs, training=training))

    def get_config(self):
        config = super().get_config()
        config.update(
            output_channels=self.output_channels,
            head_channels=self.head_channels, kernel_size=self.kernel_size,
            sep_conv=self.sep_conv, bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon, synchronized_bn=self.synchronized_bn)
        return config
