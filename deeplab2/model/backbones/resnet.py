"""ResNet-50/101 (v1, keras.applications layout) and ResNet-50-beta.

Layout as in `keras.applications.ResNet50/101` so ImageNet weights map one to
one: every convolution carries a bias before its batch norm, and a stage's
stride sits on the first 1x1 convolution (and the projection shortcut) of its
first block. ResNet-50-beta replaces the 7x7 stem by three 3x3 convolutions
(64, 64, 128 channels, the first with stride 2), as in DeepLab's
`resnet_v1_50_beta`. The last BN of each residual branch starts with gamma 0.

`layout="deeplab2"` is google-research/deeplab2's ResNet instead (its
checkpoints): no convolution biases, no max pool, and every stage, the first
included, downsamples in its first block on the 3x3 convolution (and the
shortcut), so a stage past the output stride keeps its first 3x3 at the
current rate and dilates the following ones.
"""
import keras

from deeplab2.model.backbones import base
from deeplab2.model.layers import activations
from deeplab2.model.layers.convolutions import ConvBNAct
from deeplab2.model.layers.drop_path import DropPath
from deeplab2.model.layers.drop_path import survival_rate

BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
STEMS = ("basic", "inception")
LAYOUTS = ("keras", "deeplab2")


@keras.saving.register_keras_serializable(package="deeplab2")
class Bottleneck(keras.layers.Layer):
    """1x1 (strided) -> 3x3 (atrous) -> 1x1 x4, plus the shortcut, then the activation.

    Args:
        filters: bottleneck width; the block outputs `4 * filters` channels.
        strides: stride of the block: on its first 1x1 convolution (or with
            `stride_on_3x3` its 3x3 one) and on the shortcut.
        dilation_rate: atrous rate of the 3x3 convolution.
        projection: use a 1x1 convolution shortcut instead of the identity.
        survival_rate: drop path survival rate of the residual branch.
        use_bias: biases on the convolutions (keras.applications layout).
        stride_on_3x3: stride the 3x3 convolution instead of the first 1x1.
        activation: after the first two batch norms and the sum ("relu";
            "leaky_relu" for Seamless's in-place ABN, `activations.get`).
    """

    def __init__(self, filters, strides=1, dilation_rate=1, projection=False,
                 survival_rate=1.0, use_bias=True, stride_on_3x3=False, activation="relu",
                 **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.strides = strides
        self.dilation_rate = dilation_rate
        self.projection = projection
        self.survival_rate = survival_rate
        self.use_bias = use_bias
        self.stride_on_3x3 = stride_on_3x3
        self.activation = activation
        self._act = activations.get(activation)
        self.conv1 = ConvBNAct(filters, 1, strides=1 if stride_on_3x3 else strides,
                               use_bias=use_bias, activation=activation, name="conv1")
        self.conv2 = ConvBNAct(filters, 3, strides=strides if stride_on_3x3 else 1,
                               dilation_rate=dilation_rate, use_bias=use_bias,
                               activation=activation, name="conv2")
        self.conv3 = ConvBNAct(4 * filters, 1, activation=None, use_bias=use_bias,
                               bn_gamma_initializer="zeros", name="conv3")
        self.shortcut = None
        if projection:
            self.shortcut = ConvBNAct(4 * filters, 1, strides=strides,
                                      activation=None, use_bias=use_bias,
                                      name="shortcut")
        self.drop_path = None
        if survival_rate < 1.0:
            self.drop_path = DropPath(survival_rate, name="drop_path")

    def build(self, input_shape):
        base.build_chain([self.conv1, self.conv2, self.conv3], input_shape)
        if self.shortcut is not None:
            self.shortcut.build(input_shape)

    def compute_output_shape(self, input_shape):
        shape = self.conv2.compute_output_shape(
            self.conv1.compute_output_shape(input_shape))
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
        return self._act(x + shortcut)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, strides=self.strides,
                      dilation_rate=self.dilation_rate,
                      projection=self.projection,
                      survival_rate=self.survival_rate, use_bias=self.use_bias,
                      stride_on_3x3=self.stride_on_3x3, activation=self.activation)
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
        layout: "keras" (keras.applications, its ImageNet weights) or
            "deeplab2" (google-research/deeplab2, its checkpoints).
        activation: of the stem and the blocks: "relu", or "leaky_relu"
            (slope 0.01, Seamless's in-place ABN).
    """

    def __init__(self, depth=50, stem="basic", output_stride=32,
                 multi_grid=None, drop_path_survival_rate=1.0,
                 drop_path_schedule="constant", layout="keras", activation="relu",
                 **kwargs):
        super().__init__(**kwargs)
        if depth not in BLOCKS:
            raise ValueError(f"ResNet depth must be one of {tuple(BLOCKS)}, "
                             f"got {depth}")
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
        if layout not in LAYOUTS:
            raise ValueError(f"ResNet layout must be one of {LAYOUTS}, got {layout!r}")
        self.layout = layout
        self.activation = activation
        self.depth = depth
        self.stem = stem
        self.output_stride = output_stride
        self.multi_grid = None if multi_grid is None else tuple(multi_grid)
        self.drop_path_survival_rate = drop_path_survival_rate
        self.drop_path_schedule = drop_path_schedule
        deeplab2 = layout == "deeplab2"
        tracker = base.StrideTracker(output_stride)
        stem_layers = self._stem_layers(tracker, use_bias=not deeplab2)
        if not deeplab2:
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
                if deeplab2:  # the 3x3 takes the stride, or the current rate
                    strides, rate = tracker(1 if block else 2)
                else:  # the 1x1 takes the stride; the 3x3 the rate after it
                    strides = tracker(1 if stage == 2 or block else 2)[0]
                    rate = tracker(1)[1]
                blocks.append(Bottleneck(
                    64 * 2 ** index, strides=strides, dilation_rate=rate * unit,
                    projection=block == 0, survival_rate=survival,
                    use_bias=not deeplab2, stride_on_3x3=deeplab2, activation=activation,
                    name=f"conv{stage}_block{block + 1}"))
            layers = stem_layers + blocks if stage == 2 else blocks
            self.stages.append((layers, f"res{stage}"))
        self._feature_channels = {f"res{i + 2}": 256 * 2 ** i
                                  for i in range(4)}
        self._track_stages()

    def _stem_layers(self, tracker, use_bias):
        act = self.activation
        if self.stem == "basic":
            return [ConvBNAct(64, 7, strides=tracker(2)[0], use_bias=use_bias,
                              activation=act, name="conv1")]
        return [ConvBNAct(64, 3, strides=tracker(2)[0], use_bias=use_bias,
                          activation=act, name="conv1_1"),
                ConvBNAct(64, 3, use_bias=use_bias, activation=act, name="conv1_2"),
                ConvBNAct(128, 3, use_bias=use_bias, activation=act, name="conv1_3")]

    def get_config(self):
        config = super().get_config()
        config.update(depth=self.depth, stem=self.stem,
                      output_stride=self.output_stride,
                      multi_grid=self.multi_grid,
                      drop_path_survival_rate=self.drop_path_survival_rate,
                      drop_path_schedule=self.drop_path_schedule,
                      layout=self.layout, activation=self.activation)
        return config
