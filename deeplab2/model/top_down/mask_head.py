"""Mask head on pooled RoI features (SPEC_TOP_DOWN.md section 1).

Four 3x3 convs + ReLU, a 2x2 stride-2 transposed conv + ReLU, then a 1x1
conv to one mask logit per thing class. The convs start from He normal
(fan out) and the predictor from N(0, 0.001), detectron2's init [std]; the
spec gives none. Biases start at 0. Seamless (SPEC section 4) follows the
convs and the transposed conv by a GroupNorm (they then have no bias) and uses
LeakyReLU.
"""
import keras
from keras import ops

from deeplab2.model.layers import activations, tracking
from deeplab2.model.top_down import normalization as norms

NUM_CONVS = 4


def _he_normal_fan_out():
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


@keras.saving.register_keras_serializable(package="deeplab2")
class MaskHead(keras.layers.Layer):
    """Predicts per-class mask logits of RoIs at twice the pooled size.

    Call with RoI features [R, P, P, C] (RoIAlign 14 x 14 on the FPN).
    Returns logits [R, 2P, 2P, K]; channel k - 1 is thing class k.

    Args:
        num_classes: K, the number of thing classes.
        channels: width of the convs and of the transposed conv.
        background_outputs: Detectron1's layout, K + 1 mask channels with the
            background's first; it is dropped from the output, so only the
            parameter count (UPSNet's 46.1M) changes.
        normalization: after every conv but the predictor
            (`top_down.normalization`; None).
        activation: after them and their normalization ("relu").
    """

    def __init__(self, num_classes, channels=256, background_outputs=False,
                 normalization=None, activation="relu", **kwargs):
        super().__init__(**kwargs)
        norms.check(normalization, "MaskHead")
        self.num_classes = num_classes
        self.channels = channels
        self.background_outputs = background_outputs
        self.normalization = normalization
        self.activation = activation
        self._act = activations.get(activation)
        use_bias = normalization is None
        self.convs = [
            keras.layers.Conv2D(channels, 3, padding="same", use_bias=use_bias,
                                kernel_initializer=_he_normal_fan_out(),
                                name=f"conv{i + 1}")
            for i in range(NUM_CONVS)]
        self.upsample = keras.layers.Conv2DTranspose(
            channels, 2, strides=2, use_bias=use_bias,
            kernel_initializer=_he_normal_fan_out(), name="upsample")
        self.norms = [norms.norm_layer(normalization, f"{layer.name}_norm", channels)
                      for layer in self.convs + [self.upsample]]
        self.predictor = keras.layers.Conv2D(
            num_classes + int(background_outputs), 1, name="predictor",
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.001))
        tracking.track_for_checkpoint(
            self, self.convs + [norm for norm in self.norms if norm is not None])

    def build(self, input_shape):
        shape = tuple(input_shape)
        for conv, norm in zip(self.convs, self.norms):
            conv.build(shape)
            shape = shape[:3] + (self.channels,)
            if norm is not None:
                norm.build(shape)
        self.upsample.build(shape)
        shape = self.upsample.compute_output_shape(shape)
        if self.norms[-1] is not None:
            self.norms[-1].build(shape)
        self.predictor.build(shape)

    def compute_output_shape(self, input_shape):
        shape = self.upsample.compute_output_shape(tuple(input_shape[:3]) + (self.channels,))
        return tuple(shape[:3]) + (self.num_classes,)

    def call(self, roi_features):
        x = roi_features
        for layer, norm in zip(self.convs + [self.upsample], self.norms):
            x = layer(x)
            x = self._act(x if norm is None else norm(x))
        if not self.background_outputs:
            return self.predictor(x)
        # The background channel is never read: the thing channels come from
        # the kernel's and bias's columns 1: alone, so neither the pass nor
        # its gradient computes, slices or pads [R, 2P, 2P, K + 1] logits.
        kernel = ops.cast(self.predictor.kernel[..., 1:], x.dtype)
        return ops.conv(x, kernel) + ops.cast(self.predictor.bias[1:], x.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, channels=self.channels,
                      background_outputs=self.background_outputs,
                      normalization=self.normalization, activation=self.activation)
        return config
