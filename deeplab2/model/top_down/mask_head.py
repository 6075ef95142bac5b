"""Mask head on pooled RoI features (SPEC_TOP_DOWN.md section 1).

Four 3x3 convs + ReLU, a 2x2 stride-2 transposed conv + ReLU, then a 1x1
conv to one mask logit per thing class. The convs start from He normal
(fan out) and the predictor from N(0, 0.001), detectron2's init [std]; the
spec gives none. Biases start at 0.
"""
import keras

from deeplab2.model.layers import tracking

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
    """

    def __init__(self, num_classes, channels=256, background_outputs=False, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.channels = channels
        self.background_outputs = background_outputs
        self.convs = [
            keras.layers.Conv2D(channels, 3, padding="same", activation="relu",
                                kernel_initializer=_he_normal_fan_out(),
                                name=f"conv{i + 1}")
            for i in range(NUM_CONVS)]
        self.upsample = keras.layers.Conv2DTranspose(
            channels, 2, strides=2, activation="relu",
            kernel_initializer=_he_normal_fan_out(), name="upsample")
        self.predictor = keras.layers.Conv2D(
            num_classes + int(background_outputs), 1, name="predictor",
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.001))
        tracking.track_for_checkpoint(self, self.convs)

    def build(self, input_shape):
        shape = tuple(input_shape)
        for conv in self.convs:
            conv.build(shape)
            shape = shape[:3] + (self.channels,)
        self.upsample.build(shape)
        self.predictor.build(self.upsample.compute_output_shape(shape))

    def compute_output_shape(self, input_shape):
        shape = self.upsample.compute_output_shape(tuple(input_shape[:3]) + (self.channels,))
        return tuple(shape[:3]) + (self.num_classes,)

    def call(self, roi_features):
        x = roi_features
        for conv in self.convs:
            x = conv(x)
        logits = self.predictor(self.upsample(x))
        return logits[..., 1:] if self.background_outputs else logits

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, channels=self.channels,
                      background_outputs=self.background_outputs)
        return config
