"""ResNet-50/101 (v1, keras.applications layout) and ResNet-50-beta.

Layout as in `keras.applications.ResNet50/101` so ImageNet weights map one to
one: every convolution carries a bias before its batch norm, and a stage's
stride sits on the first 1x1 convolution (and the projection shortcut) of its
first block. ResNet-50-beta replaces the 7x7 stem by three 3x3 convolutions
(64, 64, 128 channels, the first with stride 2), as in DeepLab's
`resnet_v1_50_beta`. The last BN of each residual branch starts with gamma 0.
"""
import keras
from keras import ops

from deeplab2.model.backbones import base
from deeplab2.model.layers.convolutions import ConvBNAct
from deeplab2.model.layers.drop_path import DropPath
from deeplab2.model.layers.drop_path import survival_rate

BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
STEMS = ("basic", "inception")


@keras.saving.register_keras_serializable(package="deeplab2")
class Bottleneck(keras.layers.Layer):
    """1x1 (strided) -> 3x3 (atrous) -> 1x1 x4, plus the shortcut, then ReLU.

    Args:
        filters: bottleneck width; the block outputs `4 * filters` channels.
        strides: stride of the first 1x1 convolution and of the shortcut.
        dilation_rate: atrous rate of the 3x3 convolution.
        projection: use a 1x1 convolution shortcut instead of the identity.
        survival_rate: drop path survival rate of the residual branch.
    """

    def __init__(self, filters, strides=1, dilation_rate=1, projection=False,
                 survival_rate=1.0, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.strides = strides
        self.dilation_rate = dilation_rate
        self.projection = projection
        self.survival_rate = survival_rate
        self.conv1 = ConvBNAct(filters, 1, strides=strides, use_bias=True,
                               name="conv1")
        self.conv2 = ConvBNAct(filters, 3, dilation_rate=dilation_rate,
                               use_bias=True, name="conv2")
        self.conv3 = ConvBNAct(4 * filters, 1, activation=None, use_bias=True,
                               bn_gamma_initializer="zeros", name="conv3")
        self.shortcut = None
        if projection:
            self.shortcut = ConvBNAct(4 * filters, 1, strides=strides,
                                      activation=None, use_bias=True,
                                      name="shortcut")
        self.drop_path = None
        if survival_rate < 1.0:
            self.drop_path = DropPath(survival_rate, name="drop_path")

    def build(self, input_shape):
        base.build_chain([self.conv1, self.conv2, self.conv3], input_shape)
        if self.shortcut is not None:
            self.shortcut.build(input_shape)

    def compute_output_shape(self, input_shape):
        shape = self.conv1.compute_output_shape(input_shape)
        return shape[:-1] + (4 * self.filters,)

    def call(self, inputs, training=None):
        x = self.conv1(inputs, training=training)
        x = self.conv2(x, training=training)
        x = self.conv3(x, training=training)
        if self.drop_path is not None:
            x = self.drop_path(x, training=training)
        shortcut = inputs
        if self.shortcut is not None:
            shortcut = self.shortcut(inputs, training=training)
        return ops.relu(x + shortcut)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, strides=self.strides,
                      dilation_rate=self.dilation_rate,
                      projection=self.projection,
                      survival_rate=self.survival_rate)
        return config


@keras.saving.register_keras_serializable(package="deeplab2")
class ResNet(base.Backbone):
    """ResNet v1 backbone returning "res2".."res5" (256..2048 channels).

    Args:
        depth: 50 or 101.
        stem: "basic" (7x7 conv) or "inception" (three 3x3 convs, "beta").
        output_stride: 8, 16 or 32.
        multi_grid: rate multipliers of the last blocks of conv5, e.g.
            (1, 2, 4).
        drop_path_survival_rate: survival rate of the residual branches at
            the last stage (1.0 disables drop path).
        drop_path_schedule: "constant" or "linear" over the four stages.
    """

    def __init__(self, depth=50, stem="basic", output_stride=32,
                 multi_grid=None, drop_path_survival_rate=1.0,
                 drop_path_schedule="constant", **kwargs):
        super().__init__(**kwargs)
        if depth not in BLOCKS:
            raise ValueError(f"ResNet depth must be one of {tuple(BLOCKS)}, "
                             f"got {depth}")
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
        self.depth = depth
        self.stem = stem
        self.output_stride = output_stride
        self.multi_grid = None if multi_grid is None else tuple(multi_grid)
        self.drop_path_survival_rate = drop_path_survival_rate
        self.drop_path_schedule = drop_path_schedule
        tracker = base.StrideTracker(output_stride)
        stem_layers = self._stem_layers(tracker)
        tracker(2)  # the max pool; output strides are at least 8
        stem_layers.append(base.MaxPool(name="pool1"))
        self.stages = []
        for index, num_blocks in enumerate(BLOCKS[depth]):
            stage = index + 2
            units = (base.check_multi_grid(self.multi_grid, num_blocks)
                     if stage == 5 else (1,) * num_blocks)
            survival = survival_rate(drop_path_survival_rate,
                                     drop_path_schedule, index + 1, 4)
            blocks = []
            for block, unit in enumerate(units):
                strides = tracker(1 if stage == 2 or block else 2)[0]
                blocks.append(Bottleneck(
                    64 * 2 ** index, strides=strides,
                    dilation_rate=tracker(1)[1] * unit,
                    projection=block == 0, survival_rate=survival,
                    name=f"conv{stage}_block{block + 1}"))
            layers = stem_layers + blocks if stage == 2 else blocks
            self.stages.append((layers, f"res{stage}"))
        self._feature_channels = {f"res{i + 2}": 256 * 2 ** i
                                  for i in range(4)}
        self._track_stages()

    def _stem_layers(self, tracker):
        if self.stem == "basic":
            return [ConvBNAct(64, 7, strides=tracker(2)[0], use_bias=True,
                              name="conv1")]
        return [ConvBNAct(64, 3, strides=tracker(2)[0], use_bias=True,
                          name="conv1_1"),
                ConvBNAct(64, 3, use_bias=True, name="conv1_2"),
                ConvBNAct(128, 3, use_bias=True, name="conv1_3")]

    def get_config(self):
        config = super().get_config()
        config.update(depth=self.depth, stem=self.stem,
                      output_stride=self.output_stride,
                      multi_grid=self.multi_grid,
                      drop_path_survival_rate=self.drop_path_survival_rate,
                      drop_path_schedule=self.drop_path_schedule)
        return config
