"""Switchable Atrous Convolution (SAC, DetectoRS; SWideRNet paper 004 Eq. 2).

`y = (1 - S(x)) * conv(x, w, r) + S(x) * conv(x, w, 3r)`: one kernel `w`
applied at two atrous rates, mixed by a per-pixel switch `S` (5x5 average
pooling then a 1x1 convolution to one channel, zero-initialized, so a new
layer equals the plain convolution at rate `r`). Optional global context
modules before and after (global average pooling, a 1x1 convolution,
zero-initialized, added back to the features) start as identities.
"""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="deeplab2")
class GlobalContext(keras.layers.Layer):
    """Adds a 1x1 convolution of the global average to every position."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = None

    def build(self, input_shape):
        self.conv = keras.layers.Conv2D(
            input_shape[-1], 1, kernel_initializer="zeros", name="conv")
        self.conv.build((input_shape[0], 1, 1, input_shape[-1]))

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, inputs):
        return inputs + self.conv(ops.mean(inputs, axis=(1, 2), keepdims=True))


@keras.saving.register_keras_serializable(package="deeplab2")
class SwitchableAtrousConv(keras.layers.Layer):
    """Stride-1 convolution switching per pixel between rates r and 3r.

    Args:
        filters: output channels.
        kernel_size: square kernel size.
        dilation_rate: the small rate `r`; the large one is `3 * r`.
        use_global_context: add the global context modules before and after.
        kernel_initializer: initializer of the shared kernel (no bias: a batch
            norm follows).
    """

    def __init__(self, filters, kernel_size=3, dilation_rate=1,
                 use_global_context=True, kernel_initializer="he_normal",
                 **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.dilation_rate = dilation_rate
        self.use_global_context = use_global_context
        self.kernel_initializer = kernel_initializer
        self.switch = keras.layers.Conv2D(
            1, 1, kernel_initializer="zeros", name="switch")
        self.pre_context = None
        self.post_context = None
        if use_global_context:
            self.pre_context = GlobalContext(name="pre_context")
            self.post_context = GlobalContext(name="post_context")

    def build(self, input_shape):
        channels = input_shape[-1]
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.kernel_size, self.kernel_size, channels, self.filters),
            initializer=self.kernel_initializer)
        self.switch.build(input_shape)
        if self.use_global_context:
            self.pre_context.build(input_shape)
            self.post_context.build(self.compute_output_shape(input_shape))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def call(self, inputs):
        x = inputs
        if self.use_global_context:
            x = self.pre_context(x)
        switch = self.switch(
            ops.average_pool(x, 5, strides=1, padding="same"))
        small = ops.conv(x, self.kernel, padding="same",
                         dilation_rate=self.dilation_rate)
        large = ops.conv(x, self.kernel, padding="same",
                         dilation_rate=3 * self.dilation_rate)
        x = small + switch * (large - small)
        if self.use_global_context:
            x = self.post_context(x)
        return x

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size,
                      dilation_rate=self.dilation_rate,
                      use_global_context=self.use_global_context,
                      kernel_initializer=self.kernel_initializer)
        return config
