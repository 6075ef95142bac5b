"""Wide-ResNet-41 and SWideRNet-(w1, w2, l) (paper 004, Table 1).

Stages: conv1 (3x3, 64*w1, stride 2); conv2 (3 basic blocks of 128*w1, at
stride 2); a 3x3 stride-2 max pool; conv3, conv4, conv5 (3l, 6l, 3l basic
blocks of 256, 512, 1024 times w2); conv6 (3l bottleneck blocks 1x1 512, 3x3
1024, 1x1 2048 times w2, no stride). In conv3..conv5 the *last* block
downsamples, on its second 3x3 convolution (its shortcut subsamples). Block
counts are `int(n * l)` (at least 1) and widths `4 * round(64 * w2 * 2**k)`
(conv6: `round(512 * w2)` times 1, 2, 4), as in the authors' deeplab2 code;
for w in {0.25, 0.5, 0.75, 1, 1.5, 2} that is exactly Table 1. SWideRNet adds
the simplified SE to every block of conv3..conv6 and Switchable Atrous
Convolution (with global context) to the stride-1 3x3 convolutions of conv6.
Features: "res2".."res4" are the inputs of the last blocks of conv3..conv5,
"res5" the output of conv6.

`layout="deeplab2"` is google-research/deeplab2's arrangement instead (its
checkpoints): no max pool; conv3..conv6 downsample in their *first* block, on
its first 3x3 convolution (the bottleneck's 3x3), with a strided projection
shortcut; "res2".."res4" are the outputs of conv3..conv5.

Layout evidence: trainable parameters reproduce the differences of paper
004 Tables 3 and 4 (SAC +3.94M, SE +17.51M, each extra unit of l +133.56M;
tested); with the project's decoder and multiply-add counter, the
second-convolution stride and the max pool after conv2 reproduce Table 5
within about 1 B (other placements are off by 20 B or more for
SWideRNet-(1, 1, 1) at 641x641).
"""
import keras
from keras import ops

from deeplab2.model.backbones import base
from deeplab2.model.layers.convolutions import ConvBNAct
from deeplab2.model.layers.convolutions import batch_norm
from deeplab2.model.layers.drop_path import DropPath
from deeplab2.model.layers.drop_path import survival_rate
from deeplab2.model.layers.squeeze_excite import SqueezeExcite
from deeplab2.model.layers.switchable_atrous import SwitchableAtrousConv

STAGE_BLOCKS = {3: 3, 4: 6, 5: 3, 6: 3}
LAYOUTS = ("paper", "deeplab2")


@keras.saving.register_keras_serializable(package="deeplab2")
class SACBNAct(keras.layers.Layer):
    """Switchable atrous 3x3 convolution + batch norm + optional activation."""

    def __init__(self, filters, dilation_rate=1, activation="relu",
                 bn_gamma_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.dilation_rate = dilation_rate
        self.activation = activation
        self.bn_gamma_initializer = bn_gamma_initializer
        self.conv = SwitchableAtrousConv(filters, 3, dilation_rate,
                                         name="conv")
        self.bn = batch_norm(gamma_initializer=bn_gamma_initializer)
        self._act = keras.activations.get(activation)

    def build(self, input_shape):
        base.build_chain([self.conv, self.bn], input_shape)

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def call(self, inputs, training=None):
        x = self.bn(self.conv(inputs), training=training)
        return x if self.activation is None else self._act(x)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, dilation_rate=self.dilation_rate,
                      activation=self.activation,
                      bn_gamma_initializer=self.bn_gamma_initializer)
        return config


def _conv3x3(filters, strides, rate, use_sac, name, last=False):
    """A 3x3 conv-BN(-ReLU); switchable atrous when asked and unstrided."""
    activation = None if last else "relu"
    gamma = "zeros" if last else "ones"
    if use_sac and strides == 1:
        return SACBNAct(filters, rate, activation, gamma, name=name)
    return ConvBNAct(filters, 3, strides=strides, dilation_rate=rate,
                     activation=activation, bn_gamma_initializer=gamma,
                     name=name)


class _Residual(keras.layers.Layer):
    """Shared residual logic: branch, SE, drop path, shortcut, ReLU.

    Subclasses define the `branch` property (their convolutions, in order).
    """

    def __init__(self, out_channels, strides, projection, use_se,
                 survival_rate, **kwargs):
        super().__init__(**kwargs)
        self.strides = strides
        self.projection = projection
        self.use_se = use_se
        self.survival_rate = survival_rate
        self.se = SqueezeExcite(name="se") if use_se else None
        self.drop_path = (DropPath(survival_rate, name="drop_path")
                          if survival_rate < 1.0 else None)
        self.shortcut = None
        if projection:
            self.shortcut = ConvBNAct(out_channels, 1, strides=strides,
                                      activation=None, name="shortcut")

    def build(self, input_shape):
        shape = base.build_chain(self.branch, input_shape)
        if self.se is not None:
            self.se.build(shape)
        if self.shortcut is not None:
            self.shortcut.build(input_shape)

    def compute_output_shape(self, input_shape):
        shape = input_shape
        for layer in self.branch:
            shape = layer.compute_output_shape(shape)
        return shape

    def call(self, inputs, training=None):
        x = inputs
        for layer in self.branch:
            x = layer(x, training=training)
        if self.se is not None:
            x = self.se(x)
        if self.drop_path is not None:
            x = self.drop_path(x, training=training)
        shortcut = inputs
        if self.shortcut is not None:
            shortcut = self.shortcut(inputs, training=training)
        elif self.strides > 1:
            shortcut = inputs[:, ::self.strides, ::self.strides, :]
        return ops.relu(x + shortcut)

    def get_config(self):
        config = super().get_config()
        config.update(strides=self.strides, projection=self.projection,
                      use_se=self.use_se, survival_rate=self.survival_rate)
        return config


@keras.saving.register_keras_serializable(package="deeplab2")
class BasicBlock(_Residual):
    """Two 3x3 convolutions (one of them strided) plus the shortcut.

    Args:
        filters: channels of both convolutions and of the output.
        strides: stride of the second convolution (or with `stride_first`
            the first) and of the shortcut.
        dilation_rates: atrous rates of the two convolutions.
        projection: use a 1x1 convolution shortcut.
        use_se: apply the simplified squeeze-and-excitation.
        use_sac: make the stride-1 convolutions switchable atrous.
        survival_rate: drop path survival rate.
        stride_first: stride the first convolution (deeplab2's layout).
    """

    def __init__(self, filters, strides=1, dilation_rates=(1, 1),
                 projection=False, use_se=False, use_sac=False,
                 survival_rate=1.0, stride_first=False, **kwargs):
        super().__init__(filters, strides, projection, use_se, survival_rate,
                         **kwargs)
        self.filters = filters
        self.dilation_rates = tuple(dilation_rates)
        self.use_sac = use_sac
        self.stride_first = stride_first
        self.conv1 = _conv3x3(filters, strides if stride_first else 1,
                              self.dilation_rates[0], use_sac, "conv1")
        self.conv2 = _conv3x3(filters, 1 if stride_first else strides,
                              self.dilation_rates[1], use_sac, "conv2", last=True)

    @property
    def branch(self):
        """The residual branch, in order."""
        return [self.conv1, self.conv2]

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters,
                      dilation_rates=self.dilation_rates,
                      use_sac=self.use_sac, stride_first=self.stride_first)
        return config


@keras.saving.register_keras_serializable(package="deeplab2")
class WideBottleneck(_Residual):
    """1x1 (filters) -> 3x3 (2 filters) -> 1x1 (4 filters) plus the shortcut.

    Same arguments as `BasicBlock`, with one `dilation_rate` for the 3x3,
    which also takes the stride.
    """

    def __init__(self, filters, dilation_rate=1, projection=False,
                 use_se=False, use_sac=False, survival_rate=1.0, strides=1,
                 **kwargs):
        super().__init__(4 * filters, strides, projection, use_se, survival_rate,
                         **kwargs)
        self.filters = filters
        self.dilation_rate = dilation_rate
        self.use_sac = use_sac
        self.conv1 = ConvBNAct(filters, 1, name="conv1")
        self.conv2 = _conv3x3(2 * filters, strides, dilation_rate, use_sac, "conv2")
        self.conv3 = ConvBNAct(4 * filters, 1, activation=None,
                               bn_gamma_initializer="zeros", name="conv3")

    @property
    def branch(self):
        """The residual branch, in order."""
        return [self.conv1, self.conv2, self.conv3]

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, dilation_rate=self.dilation_rate,
                      use_sac=self.use_sac)
        return config


@keras.saving.register_keras_serializable(package="deeplab2")
class SWideRNet(base.Backbone):
    """Wide-ResNet-41 scaled by (w1, w2, l), optionally with SE and SAC.

    Args:
        width1: w1, scales conv1 and conv2.
        width2: w2, scales conv3..conv6.
        depth: l, scales the number of blocks of conv3..conv6.
        use_se: simplified SE in every block of conv3..conv6.
        sac_stages: stages (3..6) whose stride-1 3x3 convs are switchable.
        output_stride: 8, 16 or 32.
        multi_grid: rate multipliers of the last blocks of conv6.
        drop_path_survival_rate: survival rate at conv6 (1.0 disables it);
            drop path covers the blocks of conv3..conv6.
        drop_path_schedule: "constant" or "linear" over conv3..conv6.
        layout: "paper" (paper 004) or "deeplab2" (google-research/deeplab2's
            checkpoints; see the module docstring).
    """

    def __init__(self, width1=1.0, width2=1.0, depth=1.0, use_se=True,
                 sac_stages=(6,), output_stride=32, multi_grid=None,
                 drop_path_survival_rate=1.0, drop_path_schedule="constant",
                 layout="paper", **kwargs):
        super().__init__(**kwargs)
        if layout not in LAYOUTS:
            raise ValueError(f"SWideRNet layout must be one of {LAYOUTS}, got {layout!r}")
        self.layout = layout
        deeplab2 = layout == "deeplab2"
        sac_stages = tuple(int(stage) for stage in sac_stages)
        if not set(sac_stages) <= set(STAGE_BLOCKS):
            raise ValueError(f"sac_stages must be within {tuple(STAGE_BLOCKS)}"
                             f", got {sac_stages}")
        self.width1 = width1
        self.width2 = width2
        self.depth = depth
        self.use_se = use_se
        self.sac_stages = sac_stages
        self.output_stride = output_stride
        self.multi_grid = None if multi_grid is None else tuple(multi_grid)
        self.drop_path_survival_rate = drop_path_survival_rate
        self.drop_path_schedule = drop_path_schedule
        tracker = base.StrideTracker(output_stride)
        conv2 = 4 * int(round(32 * width1))
        layers = [ConvBNAct(int(round(64 * width1)), 3,
                            strides=tracker(2)[0], name="conv1")]
        for block in range(3):
            layers.append(BasicBlock(
                conv2, dilation_rates=(tracker()[1], tracker()[1]),
                projection=block == 0, name=f"conv2_block{block + 1}"))
        if not deeplab2:
            tracker(2)  # the max pool; output strides are at least 8
            layers.append(base.MaxPool(name="pool2"))
        self.stages = []
        self._feature_channels = {}
        channels = conv2
        for stage, num_blocks in STAGE_BLOCKS.items():
            num_blocks = max(1, int(num_blocks * depth))
            options = dict(
                use_se=use_se, use_sac=stage in sac_stages,
                survival_rate=survival_rate(
                    drop_path_survival_rate, drop_path_schedule, stage - 2,
                    4))
            if stage < 6 and deeplab2:
                filters = 4 * int(round(32 * 2 ** (stage - 2) * width2))
                for block in range(num_blocks):
                    # The first block downsamples, on its first conv.
                    strides, rate1 = tracker(1 if block else 2)
                    layers.append(BasicBlock(
                        filters, strides, (rate1, tracker()[1]),
                        projection=block == 0, stride_first=True,
                        name=f"conv{stage}_block{block + 1}", **options))
                self.stages.append((layers, f"res{stage - 1}"))
                self._feature_channels[f"res{stage - 1}"] = filters
                layers = []
            elif stage < 6:
                filters = 4 * int(round(32 * 2 ** (stage - 2) * width2))
                for block in range(num_blocks):
                    # The last block downsamples (on its second conv); the
                    # feature entering it is res{stage - 1}.
                    if block == num_blocks - 1:
                        self.stages.append((layers, f"res{stage - 1}"))
                        self._feature_channels[f"res{stage - 1}"] = channels
                        layers = []
                    rate1 = tracker()[1]
                    strides, rate2 = tracker(
                        2 if block == num_blocks - 1 else 1)
                    layers.append(BasicBlock(
                        filters, strides, (rate1, rate2),
                        projection=block == 0, name=f"conv{stage}_block"
                        f"{block + 1}", **options))
                    channels = filters
            else:
                filters = int(round(512 * width2))
                units = base.check_multi_grid(self.multi_grid, num_blocks)
                for block, unit in enumerate(units):
                    strides, rate = tracker(2 if deeplab2 and block == 0 else 1)
                    layers.append(WideBottleneck(
                        filters, rate * unit, projection=block == 0,
                        strides=strides, name=f"conv6_block{block + 1}", **options))
        self.stages.append((layers, "res5"))
        self._feature_channels["res5"] = 4 * filters
        self._track_stages()

    def get_config(self):
        config = super().get_config()
        config.update(width1=self.width1, width2=self.width2,
                      depth=self.depth, use_se=self.use_se,
                      sac_stages=self.sac_stages,
                      output_stride=self.output_stride,
                      multi_grid=self.multi_grid,
                      drop_path_survival_rate=self.drop_path_survival_rate,
                      drop_path_schedule=self.drop_path_schedule,
                      layout=self.layout)
        return config
