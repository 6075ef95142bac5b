"""MobileNetV3-Small/Large (keras.applications layout), last block halved.

As in Panoptic-DeepLab (paper 000, Table 9 note) and DeepLab's
`mobilenet_v3_*_seg`, the stride-32 block (its expansions and outputs) and the
final 1x1 convolution have half the channels by default (`halve_last_block`).
Features, as in DeepLab: "res2".."res4" are the depthwise outputs (after BN
and activation, before SE) of the last block at strides 4, 8 and 16; "res5"
is the final 1x1 convolution.
"""
import keras

from deeplab2.model.backbones import base
from deeplab2.model.layers.convolutions import ConvBNAct
from deeplab2.model.layers.convolutions import DepthwiseConvBNAct
from deeplab2.model.layers.squeeze_excite import SqueezeExcite

# (kernel, expanded channels, output channels, SE, activation, stride,
#  feature key ending here); the last row per variant is the final 1x1 conv.
_RE, _HS = "relu", "hard_swish"
SPECS = {
    "large": (
        (3, 16, 16, False, _RE, 1, None),
        (3, 64, 24, False, _RE, 2, None),
        (3, 72, 24, False, _RE, 1, "res2"),
        (5, 72, 40, True, _RE, 2, None),
        (5, 120, 40, True, _RE, 1, None),
        (5, 120, 40, True, _RE, 1, "res3"),
        (3, 240, 80, False, _HS, 2, None),
        (3, 200, 80, False, _HS, 1, None),
        (3, 184, 80, False, _HS, 1, None),
        (3, 184, 80, False, _HS, 1, None),
        (3, 480, 112, True, _HS, 1, None),
        (3, 672, 112, True, _HS, 1, "res4"),
        (5, 672, 160, True, _HS, 2, None),
        (5, 960, 160, True, _HS, 1, None),
        (5, 960, 160, True, _HS, 1, None),
        (1, None, 960, False, _HS, 1, "res5"),
    ),
    "small": (
        (3, 16, 16, True, _RE, 2, "res2"),
        (3, 72, 24, False, _RE, 2, None),
        (3, 88, 24, False, _RE, 1, "res3"),
        (5, 96, 40, True, _HS, 2, None),
        (5, 240, 40, True, _HS, 1, None),
        (5, 240, 40, True, _HS, 1, None),
        (5, 120, 48, True, _HS, 1, None),
        (5, 144, 48, True, _HS, 1, "res4"),
        (5, 288, 96, True, _HS, 2, None),
        (5, 576, 96, True, _HS, 1, None),
        (5, 576, 96, True, _HS, 1, None),
        (1, None, 576, False, _HS, 1, "res5"),
    ),
}


def make_divisible(value, divisor=8):
    """Rounds to a multiple of `divisor`, never more than 10% down."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


@keras.saving.register_keras_serializable(package="deeplab2")
class InvertedResidual(keras.layers.Layer):
    """Expand 1x1 -> depthwise kxk -> [SE] -> project 1x1 [+ input].

    Returns `(output, depthwise_output)`.

    Args:
        expanded: channels after the expansion (no expansion conv when
            `expand` is False).
        filters: output channels.
        kernel_size: depthwise kernel size.
        strides, dilation_rate: of the depthwise convolution.
        use_se: squeeze-and-excitation (reduction 4) after the depthwise.
        activation: "relu" or "hard_swish".
        expand: whether there is an expansion convolution.
        residual: add the input to the output.
        se_gate: gate of the SE, "hard_sigmoid" or "sigmoid".
    """

    def __init__(self, expanded, filters, kernel_size=3, strides=1,
                 dilation_rate=1, use_se=False, activation="relu",
                 expand=True, residual=False, se_gate="hard_sigmoid", **kwargs):
        super().__init__(**kwargs)
        self.se_gate = se_gate
        self.expanded = expanded
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.dilation_rate = dilation_rate
        self.use_se = use_se
        self.activation = activation
        self.expand = expand
        self.residual = residual
        self.expand_conv = (ConvBNAct(expanded, 1, activation=activation,
                                      name="expand") if expand else None)
        self.depthwise = DepthwiseConvBNAct(
            kernel_size, strides=strides, dilation_rate=dilation_rate,
            activation=activation, name="depthwise")
        self.se = (SqueezeExcite(make_divisible(expanded / 4), gate=se_gate,
                                 name="se") if use_se else None)
        self.project = ConvBNAct(filters, 1, activation=None, name="project")

    def _before_se(self):
        """The expansion (if any) and depthwise convolutions."""
        return ([self.expand_conv] if self.expand else []) + [self.depthwise]

    def build(self, input_shape):
        shape = base.build_chain(self._before_se(), input_shape)
        if self.se is not None:
            self.se.build(shape)
        self.project.build(shape)

    def compute_output_shape(self, input_shape):
        shape = input_shape
        for layer in self._before_se():
            shape = layer.compute_output_shape(shape)
        return shape[:-1] + (self.filters,), shape

    def call(self, inputs, training=None):
        x = inputs
        if self.expand:
            x = self.expand_conv(x, training=training)
        depthwise = self.depthwise(x, training=training)
        x = depthwise if self.se is None else self.se(depthwise)
        x = self.project(x, training=training)
        if self.residual:
            x = x + inputs
        return x, depthwise

    def get_config(self):
        config = super().get_config()
        config.update(expanded=self.expanded, filters=self.filters,
                      kernel_size=self.kernel_size, strides=self.strides,
                      dilation_rate=self.dilation_rate, use_se=self.use_se,
                      activation=self.activation, expand=self.expand,
                      residual=self.residual, se_gate=self.se_gate)
        return config


@keras.saving.register_keras_serializable(package="deeplab2")
class MobileNetV3(base.Backbone):
    """MobileNetV3 backbone.

    Args:
        variant: "small" or "large".
        output_stride: 8, 16 or 32.
        halve_last_block: halve the stride-32 block and the final conv.
        se_gate: gate of the squeeze-and-excitation: "hard_sigmoid"
            (keras.applications, its ImageNet weights) or "sigmoid"
            (google-research/deeplab2's checkpoints).
    """

    def __init__(self, variant="large", output_stride=32,
                 halve_last_block=True, se_gate="hard_sigmoid", **kwargs):
        super().__init__(**kwargs)
        if variant not in SPECS:
            raise ValueError(f"MobileNetV3 variant must be one of "
                             f"{tuple(SPECS)}, got {variant!r}")
        self.variant = variant
        self.output_stride = output_stride
        self.halve_last_block = halve_last_block
        self.se_gate = se_gate
        tracker = base.StrideTracker(output_stride)
        layers = [ConvBNAct(16, 3, strides=tracker(2)[0],
                            activation="hard_swish", name="conv")]
        self.stages = []
        self._feature_channels = {}
        channels = 16
        halve = False
        for index, spec in enumerate(SPECS[variant]):
            kernel, expanded, filters, use_se, activation, stride, key = spec
            if halve:
                filters //= 2
                expanded = None if expanded is None else expanded // 2
            if expanded is None:
                layers.append(ConvBNAct(filters, 1, activation=activation,
                                        name="conv_1"))
                feature = filters
            else:
                strides, rate = tracker(stride)
                layers.append(InvertedResidual(
                    expanded, filters, kernel, strides, rate, use_se,
                    activation, expand=expanded != channels,
                    residual=stride == 1 and channels == filters,
                    se_gate=se_gate, name=f"block{index}"))
                feature = expanded
            channels = filters
            if key is not None:
                self.stages.append((layers, key))
                self._feature_channels[key] = feature
                layers = []
                halve = halve_last_block and key == "res4"
        self._track_stages()

    def get_config(self):
        config = super().get_config()
        config.update(variant=self.variant, output_stride=self.output_stride,
                      halve_last_block=self.halve_last_block,
                      se_gate=self.se_gate)
        return config
