"""Seamless's semantic head (paper 002 section 3.3; SPEC_TOP_DOWN.md section 4).

Each of P2..P5 goes through its own Mini-DeepLab (`MiniDL`, weights not
shared): three parallel branches, a 3x3 conv, a 3x3 conv with dilation 6, and
64 x 64 average pooling (stride 1, no padding, the window clamped to the map)
edge-replicated back to the map's size and followed by a 1x1 conv; their
concatenation is fused by a 1x1 conv (the authors' code and the paper's
51.43M parameters; the text says 3x3, SPEC section 7 item 7). Every conv is
followed by batch norm and LeakyReLU (in-place ABN) and has no bias. The four
128-channel maps are upsampled to stride 4 (bilinear, half-pixel), concatenated
(512 channels), a 1x1 conv predicts every class, and a x4 bilinear upsampling
brings the logits to the input resolution.
"""
import keras
import tensorflow as tf
from keras import ops

from deeplab2.model.layers import activations, tracking
from deeplab2.model.top_down import normalization as norms
from deeplab2.model.top_down.semantic_fpn import INPUT_LEVELS, OUTPUT_STRIDE, level_shapes, upsample

POOL_SIZE = 64
DILATION_RATE = 6


def _he_normal():
    return keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal")


def _pooled_mean_along(x, axis, window):
    """Stride-1 mean over `window` (clamped to the axis length n) without padding,
    then edge replication back to n: before (k - 1) // 2 copies of the first
    mean, after k // 2 of the last. By differences of a float32 cumulative sum,
    so the window may depend on a size unknown when tracing."""
    n = tf.shape(x)[axis]
    k = tf.minimum(window, n)
    values = tf.cast(x, tf.float32)
    paddings = [[0, 0]] * 4
    paddings[axis] = [1, 0]
    cumulative = tf.pad(tf.cumsum(values, axis=axis), paddings)  # [.., n + 1, ..]
    first = tf.clip_by_value(tf.range(n) - (k - 1) // 2, 0, n - k)
    sums = (tf.gather(cumulative, first + k, axis=axis)
            - tf.gather(cumulative, first, axis=axis))
    return tf.cast(sums / tf.cast(k, tf.float32), x.dtype)


def replicate_pooled_mean(x, window=POOL_SIZE):
    """[B, H, W, C] -> [B, H, W, C]: average pooling with a window x window
    kernel (each side clamped to the map), stride 1 and no padding, then
    replicate padding back to H x W (the pooling is separable)."""
    return _pooled_mean_along(_pooled_mean_along(x, 1, window), 2, window)


@keras.saving.register_keras_serializable(package="deeplab2")
class MiniDL(keras.layers.Layer):
    """One Mini-DeepLab: [B, H, W, C] -> [B, H, W, channels] (see the module docstring).

    Args:
        channels: width of every branch and of the fuse conv (128).
        dilation_rate: of the dilated branch (6).
        pool_size: the pooling window (64), clamped to the map.
        normalization: after every conv (`top_down.normalization`).
        activation: after every normalization.
        bn_momentum, bn_epsilon: of "batch_norm".
    """

    def __init__(self, channels=128, dilation_rate=DILATION_RATE, pool_size=POOL_SIZE,
                 normalization="batch_norm", activation="leaky_relu",
                 bn_momentum=norms.BN_MOMENTUM, bn_epsilon=norms.EPSILON, **kwargs):
        super().__init__(**kwargs)
        norms.check(normalization, "MiniDL")
        self.channels = channels
        self.dilation_rate = dilation_rate
        self.pool_size = pool_size
        self.normalization = normalization
        self.activation = activation
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self._act = activations.get(activation)
        use_bias = normalization is None

        def conv(kernel_size, name, dilation_rate=1):
            return keras.layers.Conv2D(channels, kernel_size, padding="same",
                                       dilation_rate=dilation_rate, use_bias=use_bias,
                                       kernel_initializer=_he_normal(), name=name)

        self.local_conv = conv(3, "local")
        self.dilated_conv = conv(3, "dilated", dilation_rate)
        self.pooled_conv = conv(1, "pooled")
        self.fuse_conv = conv(1, "fuse")
        self.convs = [self.local_conv, self.dilated_conv, self.pooled_conv, self.fuse_conv]
        self.norms = [norms.norm_layer(normalization, f"{c.name}_norm", channels, bn_momentum,
                                       bn_epsilon) for c in self.convs]
        tracking.track_for_checkpoint(self, [n for n in self.norms if n is not None])

    def build(self, input_shape):
        shape = tuple(input_shape)
        hidden = shape[:3] + (self.channels,)
        for conv, norm in zip(self.convs, self.norms):
            conv.build(shape[:3] + (3 * self.channels,) if conv is self.fuse_conv else shape)
            if norm is not None:
                norm.build(hidden)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3]) + (self.channels,)

    def _branch(self, index, x):
        x = self.convs[index](x)
        norm = self.norms[index]
        return self._act(x if norm is None else norm(x))

    def call(self, x):
        branches = [self._branch(0, x), self._branch(1, x),
                    self._branch(2, replicate_pooled_mean(x, self.pool_size))]
        return self._branch(3, ops.concatenate(branches, axis=-1))

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, dilation_rate=self.dilation_rate,
                      pool_size=self.pool_size, normalization=self.normalization,
                      activation=self.activation, bn_momentum=self.bn_momentum,
                      bn_epsilon=self.bn_epsilon)
        return config


@keras.saving.register_keras_serializable(package="deeplab2")
class SeamlessSemanticHead(keras.layers.Layer):
    """Semantic logits from FPN levels P2..P5 (see the module docstring).

    Call with the FPN's output dict (only "p2".."p5" are read); level l must
    be exactly 2**(l - 2) times smaller than P2 (inputs padded to a multiple
    of 32). Returns logits [B, 4 * H2, 4 * W2, num_classes] for a P2 of
    H2 x W2.

    Args:
        num_classes: every class of the dataset but void (things included).
        channels, dilation_rate, pool_size, normalization, activation,
            bn_momentum, bn_epsilon: of each `MiniDL`.
    """

    def __init__(self, num_classes, channels=128, dilation_rate=DILATION_RATE,
                 pool_size=POOL_SIZE, normalization="batch_norm", activation="leaky_relu",
                 bn_momentum=norms.BN_MOMENTUM, bn_epsilon=norms.EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.channels = channels
        self.dilation_rate = dilation_rate
        self.pool_size = pool_size
        self.normalization = normalization
        self.activation = activation
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.mini_deeplabs = [
            MiniDL(channels, dilation_rate, pool_size, normalization, activation, bn_momentum,
                   bn_epsilon, name=f"p{level}_minidl")
            for level in INPUT_LEVELS]
        tracking.track_for_checkpoint(self, self.mini_deeplabs)
        self.predictor = keras.layers.Conv2D(
            num_classes, 1, name="predictor",
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.001))

    def build(self, input_shape):
        shapes = level_shapes(input_shape, "SeamlessSemanticHead")
        for level, minidl in zip(INPUT_LEVELS, self.mini_deeplabs):
            minidl.build(shapes[level])
        self.predictor.build(shapes[2][:3] + (len(INPUT_LEVELS) * self.channels,))

    def compute_output_shape(self, input_shape):
        batch, height, width = tuple(input_shape["p2"])[:3]
        height, width = (None if n is None else OUTPUT_STRIDE * n for n in (height, width))
        return (batch, height, width, self.num_classes)

    def call(self, features):
        maps = []
        for level, minidl in zip(INPUT_LEVELS, self.mini_deeplabs):
            x = minidl(features[f"p{level}"])
            maps.append(upsample(x, 2 ** (level - 2)) if level > 2 else x)
        return upsample(self.predictor(ops.concatenate(maps, axis=-1)), OUTPUT_STRIDE)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, channels=self.channels,
                      dilation_rate=self.dilation_rate, pool_size=self.pool_size,
                      normalization=self.normalization, activation=self.activation,
                      bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon)
        return config
