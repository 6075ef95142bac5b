"""Convolution + batch norm + activation blocks of backbones and decoders.

Padding follows TF-slim / deeplab2: stride-1 convolutions use "same" padding
(symmetric for odd kernels), strided convolutions pad explicitly and
symmetrically by `(k_eff - 1) // 2` before and the rest after, then use
"valid".
On the project's `k * stride + 1` crop sizes both agree with "same"; on even
sizes the explicit padding keeps the feature grid aligned with align-corners
resizing.

Batch norm defaults: momentum 0.99, epsilon 1e-3, synchronized across replicas
(`FusedBatchNormalization(synchronized=True)`: Keras's batch norm, trained by
TensorFlow's fused kernel on one replica). At inference (and with frozen
batch norm) the statistics are folded into the convolution's kernel and bias,
which TensorFlow then fuses with the activation. Stride-1 dilated and 1x1
convolutions train through `conv_gradients`, whose gradients are faster on CPU.
"""
import keras
import tensorflow as tf
from keras import ops

from deeplab2.model.layers import activations
from deeplab2.model.layers.conv_gradients import atrous_conv2d, pointwise_conv2d
from deeplab2.model.layers.fused_batch_norm import FusedBatchNormalization

_SERIAL_PACKAGE = "deeplab2"


def fixed_padding(kernel_size, dilation_rate=1):
    """Returns ((top, bottom), (left, right)) padding for a strided conv."""
    effective = kernel_size + (kernel_size - 1) * (dilation_rate - 1)
    total = effective - 1
    begin = total // 2
    return ((begin, total - begin), (begin, total - begin))


def batch_norm(momentum=0.99, epsilon=1e-3, synchronized=True,
               gamma_initializer="ones", name="bn"):
    """Returns the project's batch norm layer."""
    return FusedBatchNormalization(
        momentum=momentum, epsilon=epsilon, synchronized=synchronized,
        gamma_initializer=gamma_initializer, name=name)


class _ConvNormAct(keras.layers.Layer):
    """Shared padding, batch norm and activation; subclasses set `conv`."""

    def __init__(self, kernel_size, strides, dilation_rate, activation,
                 use_bias, use_bn, bn_momentum, bn_epsilon, synchronized_bn,
                 bn_gamma_initializer, kernel_initializer, **kwargs):
        super().__init__(**kwargs)
        if strides > 1 and dilation_rate > 1:
            raise ValueError("strides > 1 and dilation_rate > 1 are exclusive")
        self.kernel_size = kernel_size
        self.strides = strides
        self.dilation_rate = dilation_rate
        self.use_bias = use_bias
        self.kernel_initializer = kernel_initializer
        # Strided 1x1 convs need no padding ("valid" then equals "same").
        self._padding = (fixed_padding(kernel_size, dilation_rate)
                         if strides > 1 and kernel_size > 1 else None)
        self.activation = activation
        self.use_bn = use_bn
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.synchronized_bn = synchronized_bn
        self.bn_gamma_initializer = bn_gamma_initializer
        self._act = activations.get(activation)
        self.bn = (batch_norm(bn_momentum, bn_epsilon, synchronized_bn,
                              bn_gamma_initializer) if use_bn else None)

    @property
    def _conv_padding(self):
        return "same" if self._padding is None else "valid"

    def _padded_shape(self, shape):
        if self._padding is None:
            return shape
        (top, bottom), (left, right) = self._padding
        height = None if shape[1] is None else shape[1] + top + bottom
        width = None if shape[2] is None else shape[2] + left + right
        return (shape[0], height, width, shape[3])

    def build(self, input_shape):
        self.conv.build(self._padded_shape(input_shape))
        if self.bn is not None:
            self.bn.build(self.compute_output_shape(input_shape))

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(self._padded_shape(input_shape))

    def call(self, inputs, training=None):
        x = inputs
        if self._padding is not None:
            x = ops.pad(x, ((0, 0),) + self._padding + ((0, 0),))
        if self.bn is not None and not (training and self.bn.trainable):
            x = self._folded_conv(x)
        else:
            x = self._unfolded_conv(x)
            if self.bn is not None:
                x = self.bn(x, training=training)
        if self.activation is not None:
            x = self._act(x)
        return x

    def _unfolded_conv(self, x):
        """The convolution with its own kernel and bias (training, no BN)."""
        return self.conv(x)

    def _folded_conv(self, x):
        """Inference: conv with batch norm folded into its kernel and bias.

        Same result as conv then batch norm with moving statistics, in one
        convolution + bias add that TensorFlow fuses with the activation.
        """
        bn = self.bn
        scale = bn.gamma * ops.rsqrt(bn.moving_variance + bn.epsilon)
        bias = bn.beta - bn.moving_mean * scale
        if self.use_bias:
            bias = bias + self.conv.bias * scale
        kernel = ops.cast(self._scaled_kernel(scale), x.dtype)
        return tf.nn.bias_add(self._convolve(x, kernel),
                              ops.cast(bias, x.dtype))

    def get_config(self):
        config = super().get_config()
        config.update(
            kernel_size=self.kernel_size, strides=self.strides,
            dilation_rate=self.dilation_rate, activation=self.activation,
            use_bias=self.use_bias, use_bn=self.use_bn,
            bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
            synchronized_bn=self.synchronized_bn,
            bn_gamma_initializer=self.bn_gamma_initializer,
            kernel_initializer=self.kernel_initializer)
        return config


@keras.saving.register_keras_serializable(package=_SERIAL_PACKAGE)
class ConvBNAct(_ConvNormAct):
    """Conv2D (optionally grouped) + optional batch norm + optional activation.

    Args:
        filters: output channels.
        kernel_size: square kernel size.
        strides: square stride; > 1 pads explicitly (see module docstring).
        dilation_rate: atrous rate (only with strides == 1).
        groups: convolution groups.
        activation: activation name (`activations.get`) or None.
        use_bias: add a bias (normally only without batch norm).
        use_bn: apply batch norm after the convolution.
        bn_momentum, bn_epsilon, synchronized_bn, bn_gamma_initializer: batch
            norm options ("zeros" gamma zero-initializes a residual branch).
        kernel_initializer: Keras initializer name.
    """

    def __init__(self, filters, kernel_size=1, strides=1, dilation_rate=1,
                 groups=1, activation="relu", use_bias=False, use_bn=True,
                 bn_momentum=0.99, bn_epsilon=1e-3, synchronized_bn=True,
                 bn_gamma_initializer="ones", kernel_initializer="he_normal",
                 **kwargs):
        super().__init__(kernel_size, strides, dilation_rate, activation,
                         use_bias, use_bn, bn_momentum, bn_epsilon,
                         synchronized_bn, bn_gamma_initializer,
                         kernel_initializer, **kwargs)
        self.filters = filters
        self.groups = groups
        self.conv = keras.layers.Conv2D(
            filters, kernel_size, strides=strides, padding=self._conv_padding,
            dilation_rate=dilation_rate, groups=groups, use_bias=use_bias,
            kernel_initializer=kernel_initializer, name="conv")

    def _unfolded_conv(self, x):
        # Stride-1 dilated and 1x1 convolutions: the same forward pass with a
        # gradient that is fast on CPU.
        if self.strides != 1 or self.groups != 1:
            return self.conv(x)
        if self.kernel_size == 1:
            x = pointwise_conv2d(x, ops.cast(self.conv.kernel, x.dtype))
        elif self.dilation_rate > 1 and self.kernel_size % 2 == 1:
            x = atrous_conv2d(x, ops.cast(self.conv.kernel, x.dtype), self.dilation_rate)
        else:
            return self.conv(x)
        if self.use_bias:
            x = tf.nn.bias_add(x, ops.cast(self.conv.bias, x.dtype))
        return x

    def _scaled_kernel(self, scale):
        return self.conv.kernel * scale

    def _convolve(self, x, kernel):
        return ops.conv(x, kernel, strides=self.strides,
                        padding=self._conv_padding,
                        dilation_rate=self.dilation_rate)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, groups=self.groups)
        return config


@keras.saving.register_keras_serializable(package=_SERIAL_PACKAGE)
class DepthwiseConvBNAct(_ConvNormAct):
    """Depthwise conv + optional batch norm + optional activation.

    Same arguments as `ConvBNAct`, with `depth_multiplier` instead of
    `filters` and `groups`.
    """

    def __init__(self, kernel_size=3, strides=1, dilation_rate=1,
                 depth_multiplier=1, activation="relu", use_bias=False,
                 use_bn=True, bn_momentum=0.99, bn_epsilon=1e-3,
                 synchronized_bn=True, bn_gamma_initializer="ones",
                 kernel_initializer="he_normal", **kwargs):
        super().__init__(kernel_size, strides, dilation_rate, activation,
                         use_bias, use_bn, bn_momentum, bn_epsilon,
                         synchronized_bn, bn_gamma_initializer,
                         kernel_initializer, **kwargs)
        self.depth_multiplier = depth_multiplier
        self.conv = keras.layers.DepthwiseConv2D(
            kernel_size, strides=strides, padding=self._conv_padding,
            dilation_rate=dilation_rate, depth_multiplier=depth_multiplier,
            use_bias=use_bias, depthwise_initializer=kernel_initializer,
            name="depthwise")

    def _scaled_kernel(self, scale):
        kernel = self.conv.kernel
        return kernel * ops.reshape(scale, kernel.shape[2:])

    def _convolve(self, x, kernel):
        return ops.depthwise_conv(x, kernel, strides=self.strides,
                                  padding=self._conv_padding,
                                  dilation_rate=self.dilation_rate)

    def get_config(self):
        config = super().get_config()
        config.update(depth_multiplier=self.depth_multiplier)
        return config


@keras.saving.register_keras_serializable(package=_SERIAL_PACKAGE)
class SeparableConvBNAct(keras.layers.Layer):
    """Depthwise kxk + BN + act, then pointwise 1x1 + BN + act (deeplab2).

    Args:
        filters: output channels of the pointwise conv.
        kernel_size, strides, dilation_rate: of the depthwise conv.
        activation: used after both convolutions (None for none).
        use_bn, bn_momentum, bn_epsilon, synchronized_bn: batch norm options.
        pointwise_gamma_initializer: gamma initializer of the pointwise BN.
    """

    def __init__(self, filters, kernel_size=3, strides=1, dilation_rate=1,
                 activation="relu", use_bn=True, bn_momentum=0.99,
                 bn_epsilon=1e-3, synchronized_bn=True,
                 pointwise_gamma_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.dilation_rate = dilation_rate
        self.activation = activation
        self.use_bn = use_bn
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.synchronized_bn = synchronized_bn
        self.pointwise_gamma_initializer = pointwise_gamma_initializer
        bn_options = dict(activation=activation, use_bias=not use_bn,
                          use_bn=use_bn, bn_momentum=bn_momentum,
                          bn_epsilon=bn_epsilon,
                          synchronized_bn=synchronized_bn)
        self.depthwise = DepthwiseConvBNAct(
            kernel_size, strides=strides, dilation_rate=dilation_rate,
            name="depthwise", **bn_options)
        self.pointwise = ConvBNAct(
            filters, 1, bn_gamma_initializer=pointwise_gamma_initializer,
            name="pointwise", **bn_options)

    def build(self, input_shape):
        self.depthwise.build(input_shape)
        self.pointwise.build(self.depthwise.compute_output_shape(input_shape))

    def compute_output_shape(self, input_shape):
        return self.pointwise.compute_output_shape(
            self.depthwise.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        return self.pointwise(self.depthwise(inputs, training=training),
                              training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters, kernel_size=self.kernel_size,
            strides=self.strides, dilation_rate=self.dilation_rate,
            activation=self.activation, use_bn=self.use_bn,
            bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
            synchronized_bn=self.synchronized_bn,
            pointwise_gamma_initializer=self.pointwise_gamma_initializer)
        return config


def conv_bn_act(filters, kernel_size, sep_conv, dilation_rate=1, name=None,
                **kwargs):
    """kxk conv + BN + act, depthwise-separable if `sep_conv`."""
    block = SeparableConvBNAct if sep_conv else ConvBNAct
    return block(filters, kernel_size, dilation_rate=dilation_rate, name=name,
                 **kwargs)
