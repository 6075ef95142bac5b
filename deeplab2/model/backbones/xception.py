"""Aligned Xception-65/71 of DeepLabV3+ (as in DeepLab's `xception_65/71`).

Every max pool of Xception is a strided separable convolution, each
depthwise convolution is followed by batch norm, and the middle flow has 16
modules. A module is three 3x3 separable convolutions (the last one strided)
with a ReLU before each (inside them for the final module) and a 1x1
convolution, identity or no shortcut. Xception-71 adds a stride-1 module
before each of the stride-4 and stride-8 entry modules. Features, as in
DeepLab: "res2".."res4" are the second separable convolution of the modules
that leave strides 4, 8 and 16; "res5" is the output of the exit flow.
"""
import keras
from keras import ops

from deeplab2.model.backbones import base
from deeplab2.model.layers.convolutions import ConvBNAct
from deeplab2.model.layers.convolutions import SeparableConvBNAct

ENTRY_FLOWS = {
    65: ((128, 2), (256, 2), (728, 2)),
    71: ((128, 2), (256, 1), (256, 2), (728, 1), (728, 2)),
}
SHORTCUTS = ("conv", "sum", "none")


@keras.saving.register_keras_serializable(package="deeplab2")
class XceptionModule(keras.layers.Layer):
    """Three separable convolutions plus a shortcut.

    Returns `(output, second_separable_conv_output)`.

    Args:
        depths: output channels of the three separable convolutions.
        strides: stride of the third one (and of a conv shortcut).
        dilation_rates: atrous rates of the three.
        shortcut: "conv" (1x1 conv + BN), "sum" (identity) or "none".
        activation_inside: ReLU after each depthwise and pointwise BN instead
            of before each separable convolution.
    """

    def __init__(self, depths, strides=1, dilation_rates=(1, 1, 1),
                 shortcut="conv", activation_inside=False, **kwargs):
        super().__init__(**kwargs)
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, "
                             f"got {shortcut!r}")
        self.depths = tuple(depths)
        self.strides = strides
        self.dilation_rates = tuple(dilation_rates)
        self.shortcut = shortcut
        self.activation_inside = activation_inside
        activation = "relu" if activation_inside else None
        self.separable_conv1, self.separable_conv2, self.separable_conv3 = (
            SeparableConvBNAct(
                depth, 3, strides=strides if index == 2 else 1,
                dilation_rate=rate, activation=activation,
                name=f"separable_conv{index + 1}")
            for index, (depth, rate) in enumerate(
                zip(self.depths, self.dilation_rates)))
        self.shortcut_conv = None
        if shortcut == "conv":
            self.shortcut_conv = ConvBNAct(self.depths[-1], 1,
                                           strides=strides, activation=None,
                                           name="shortcut")

    @property
    def separable(self):
        """The three separable convolutions, in order."""
        return [self.separable_conv1, self.separable_conv2,
                self.separable_conv3]

    def build(self, input_shape):
        base.build_chain(self.separable, input_shape)
        if self.shortcut_conv is not None:
            self.shortcut_conv.build(input_shape)

    def compute_output_shape(self, input_shape):
        shapes = [input_shape]
        for layer in self.separable:
            shapes.append(layer.compute_output_shape(shapes[-1]))
        return shapes[3], shapes[2]

    def call(self, inputs, training=None):
        x = inputs
        outputs = []
        for layer in self.separable:
            if not self.activation_inside:
                x = ops.relu(x)
            x = layer(x, training=training)
            outputs.append(x)
        if self.shortcut == "conv":
            x = x + self.shortcut_conv(inputs, training=training)
        elif self.shortcut == "sum":
            x = x + inputs
        return x, outputs[1]

    def get_config(self):
        config = super().get_config()
        config.update(depths=self.depths, strides=self.strides,
                      dilation_rates=self.dilation_rates,
                      shortcut=self.shortcut,
                      activation_inside=self.activation_inside)
        return config


@keras.saving.register_keras_serializable(package="deeplab2")
class Xception(base.Backbone):
    """Aligned Xception backbone.

    Args:
        depth: 65 or 71.
        output_stride: 8, 16 or 32.
        multi_grid: rate multipliers of the three separable convolutions of
            the last module, e.g. (1, 2, 4).
    """

    def __init__(self, depth=65, output_stride=32, multi_grid=None,
                 **kwargs):
        super().__init__(**kwargs)
        if depth not in ENTRY_FLOWS:
            raise ValueError(f"Xception depth must be one of "
                             f"{tuple(ENTRY_FLOWS)}, got {depth}")
        self.depth = depth
        self.output_stride = output_stride
        self.multi_grid = None if multi_grid is None else tuple(multi_grid)
        tracker = base.StrideTracker(output_stride)
        layers = [ConvBNAct(32, 3, strides=tracker(2)[0], name="conv1_1"),
                  ConvBNAct(64, 3, name="conv1_2")]
        modules = [(f"entry_block{index + 1}", (depth,) * 3, stride, "conv")
                   for index, (depth, stride) in enumerate(ENTRY_FLOWS[depth])]
        modules += [(f"middle_block{index + 1}", (728,) * 3, 1, "sum")
                    for index in range(16)]
        modules += [("exit_block1", (728, 1024, 1024), 2, "conv"),
                    ("exit_block2", (1536, 1536, 2048), 1, "none")]
        self.stages = []
        self._feature_channels = {}
        nominal = 2
        for name, depths, stride, shortcut in modules:
            last = name == "exit_block2"
            units = base.check_multi_grid(self.multi_grid if last else None,
                                          3)
            rates = [tracker()[1] * units[0], tracker()[1] * units[1]]
            strides, rate = tracker(stride)
            layers.append(XceptionModule(
                depths, strides, rates + [rate * units[2]], shortcut,
                activation_inside=last, name=name))
            if stride == 2 and nominal >= 4:
                key = f"res{nominal.bit_length() - 1}"
                self.stages.append((layers, key))
                self._feature_channels[key] = depths[1]
                layers = []
            nominal *= stride
        self.stages.append((layers, "res5"))
        self._feature_channels["res5"] = 2048
        self._track_stages()

    def get_config(self):
        config = super().get_config()
        config.update(depth=self.depth, output_stride=self.output_stride,
                      multi_grid=self.multi_grid)
        return config
