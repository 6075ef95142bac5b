"""Atrous Spatial Pyramid Pooling (DeepLabV3) as used by Panoptic-DeepLab."""
import keras
import tensorflow as tf
from keras import ops

from deeplab2.model.layers import convolutions
from deeplab2.model.layers import resize
from deeplab2.model.layers import tracking

_DEFAULT_RATES_AT_OS16 = (6, 12, 18)


def atrous_rates_for(output_stride):
    """ASPP rates: (6, 12, 18) at output stride 16, scaled by 16 / stride."""
    if output_stride not in (8, 16, 32):
        raise ValueError(f"unsupported output_stride {output_stride}")
    return tuple(rate * 16 // output_stride for rate in _DEFAULT_RATES_AT_OS16)


def pool_size_for(crop_size, output_stride):
    """Feature size of a `k * output_stride + 1` crop (the pooling window)."""
    if crop_size is None:
        return None
    return tuple((size - 1) // output_stride + 1 for size in crop_size)


@keras.saving.register_keras_serializable(package="deeplab2")
class ASPPPooling(keras.layers.Layer):
    """Image pooling branch: average pool, 1x1 conv + BN + ReLU, upsample.

    In training the window is `pool_size` (the training crop's feature size,
    as in the reference); when the window covers the whole feature map, or at
    inference, the pool is global, so evaluation on images larger than the
    training crop sees global context.
    """

    def __init__(self, filters, pool_size=None, bn_momentum=0.99,
                 bn_epsilon=1e-3, synchronized_bn=True, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.pool_size = None if pool_size is None else tuple(pool_size)
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.synchronized_bn = synchronized_bn
        self.conv = convolutions.ConvBNAct(
            filters, 1, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon,
            synchronized_bn=synchronized_bn, name="conv")

    def build(self, input_shape):
        self.conv.build((input_shape[0], 1, 1, input_shape[3]))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3]) + (self.filters,)

    def _window(self, height, width, training):
        """The pooling window, or None for a global pool."""
        if not training or self.pool_size is None:
            return None
        if height is None or width is None:
            return None
        if self.pool_size[0] >= height and self.pool_size[1] >= width:
            return None
        return (min(self.pool_size[0], height), min(self.pool_size[1], width))

    def _batch_norm_group(self, pooled):
        """Samples batch norm would draw its training statistics from: the
        pooled positions of this replica's batch, times the replicas when
        synchronized; None when the batch size is not static."""
        batch, height, width = pooled.shape[:3]
        if batch is None or height is None or width is None:
            return None
        replicas = 1
        if self.synchronized_bn:
            context = tf.distribute.get_replica_context()
            replicas = context.num_replicas_in_sync if context is not None else 1
        return batch * height * width * replicas

    def _project(self, pooled, training):
        """1x1 conv + BN + ReLU of the pooled features.

        A training crop pools to one position per image, so with one image
        per batch-norm group (one image per replica, not synchronized) the
        batch statistics are those of a single sample: its variance is 0, the
        moving variance decays towards 0 and inference divides by ~sqrt(eps).
        Such a group normalizes with the moving statistics instead and leaves
        them as they are.
        """
        if training and self._batch_norm_group(pooled) == 1:
            training = False
        return self.conv(pooled, training=training)

    def call(self, inputs, training=None):
        height, width = inputs.shape[1], inputs.shape[2]
        window = self._window(height, width, training)
        if window is None:
            pooled = ops.mean(inputs, axis=(1, 2), keepdims=True)
            pooled = self._project(pooled, training)
            size = ops.shape(inputs)[1:3]
            return ops.broadcast_to(
                pooled, (ops.shape(inputs)[0], size[0], size[1], self.filters))
        pooled = ops.average_pool(inputs, window, strides=1, padding="valid")
        pooled = self._project(pooled, training)
        return resize.resize_align_corners(pooled, ops.shape(inputs)[1:3])

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, pool_size=self.pool_size,
                      bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
                      synchronized_bn=self.synchronized_bn)
        return config


@keras.saving.register_keras_serializable(package="deeplab2")
class ASPP(keras.layers.Layer):
    """1x1 conv, three 3x3 atrous convs, image pooling; concat, 1x1, dropout.

    Args:
        filters: channels of every branch and of the output.
        atrous_rates: three rates, e.g. `atrous_rates_for(output_stride)`.
        pool_size: training pooling window (feature pixels) or None (global).
        sep_conv: depthwise-separable atrous convs instead of standard ones.
        dropout_rate: dropout after the projection.
        bn_momentum, bn_epsilon, synchronized_bn: batch norm options.
    """

    def __init__(self, filters=256, atrous_rates=_DEFAULT_RATES_AT_OS16,
                 pool_size=None, sep_conv=True, dropout_rate=0.1,
                 bn_momentum=0.99, bn_epsilon=1e-3, synchronized_bn=True,
                 **kwargs):
        super().__init__(**kwargs)
        if len(atrous_rates) != 3:
            raise ValueError("ASPP takes exactly three atrous rates")
        self.filters = filters
        self.atrous_rates = tuple(atrous_rates)
        self.pool_size = None if pool_size is None else tuple(pool_size)
        self.sep_conv = sep_conv
        self.dropout_rate = dropout_rate
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.synchronized_bn = synchronized_bn
        bn = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon,
                  synchronized_bn=synchronized_bn)
        self.conv1x1 = convolutions.ConvBNAct(filters, 1, name="conv1x1", **bn)
        self.atrous_convs = [
            convolutions.conv_bn_act(filters, 3, sep_conv, dilation_rate=rate,
                                     name=f"atrous{i}", **bn)
            for i, rate in enumerate(self.atrous_rates)]
        tracking.track_for_checkpoint(self, self.atrous_convs)
        self.pooling = ASPPPooling(filters, self.pool_size, name="pooling",
                                   **bn)
        self.projection = convolutions.ConvBNAct(filters, 1,
                                                 name="projection", **bn)
        self.dropout = keras.layers.Dropout(dropout_rate)

    def _branches(self):
        return [self.conv1x1, *self.atrous_convs, self.pooling]

    def build(self, input_shape):
        for branch in self._branches():
            branch.build(input_shape)
        self.projection.build(tuple(input_shape[:3]) + (5 * self.filters,))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3]) + (self.filters,)

    def call(self, inputs, training=None):
        outputs = [branch(inputs, training=training)
                   for branch in self._branches()]
        x = self.projection(ops.concatenate(outputs, axis=-1),
                            training=training)
        return self.dropout(x, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters, atrous_rates=self.atrous_rates,
            pool_size=self.pool_size, sep_conv=self.sep_conv,
            dropout_rate=self.dropout_rate, bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon, synchronized_bn=self.synchronized_bn)
        return config
