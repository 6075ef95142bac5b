"""Box head on pooled RoI features (SPEC_TOP_DOWN.md section 1).

Flatten, two fc layers + ReLU, then class logits (init N(0, 0.01)) and
class-specific box deltas (init N(0, 0.001)); biases start at 0. Seamless
(SPEC section 4) follows each fc layer by a GroupNorm (the fc then has no bias)
and uses LeakyReLU.
"""
import math

import keras
from keras import ops

from deeplab2.model.layers import activations
from deeplab2.model.top_down import normalization as norms

# Kaiming-uniform with a = 1, detectron2's fc init [std]; the spec gives none.
_FC_INITIALIZER = "lecun_uniform"


@keras.saving.register_keras_serializable(package="deeplab2")
class BoxHead(keras.layers.Layer):
    """Classifies RoIs and refines their boxes per class.

    Call with RoI features [R, P, P, C] (RoIAlign 7 x 7 on the FPN).
    Returns {"class_logits": [R, K + 1], "box_deltas": [R, 4K]}: logit 0 is
    background and logit k thing class k; thing class k's deltas
    (dx, dy, dw, dh) sit at columns 4(k - 1) .. 4k - 1.

    Args:
        num_classes: K, the number of thing classes.
        fc_channels: width of both fc layers.
        background_outputs: Detectron1's layout, deltas for K + 1 classes
            with the background's first; its columns are dropped from the
            output, so only the parameter count (UPSNet's 46.1M) changes.
        normalization: after each fc layer (`top_down.normalization`; None).
        activation: after each fc layer and its normalization ("relu").
    """

    def __init__(self, num_classes, fc_channels=1024, background_outputs=False,
                 normalization=None, activation="relu", **kwargs):
        super().__init__(**kwargs)
        norms.check(normalization, "BoxHead")
        self.num_classes = num_classes
        self.fc_channels = fc_channels
        self.background_outputs = background_outputs
        self.normalization = normalization
        self.activation = activation
        self._act = activations.get(activation)
        self.fc1 = keras.layers.Dense(fc_channels, use_bias=normalization is None,
                                      kernel_initializer=_FC_INITIALIZER, name="fc1")
        self.fc2 = keras.layers.Dense(fc_channels, use_bias=normalization is None,
                                      kernel_initializer=_FC_INITIALIZER, name="fc2")
        self.norm1 = norms.norm_layer(normalization, "norm1", fc_channels)
        self.norm2 = norms.norm_layer(normalization, "norm2", fc_channels)
        self.classifier = keras.layers.Dense(
            num_classes + 1, name="classifier",
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01))
        self.box_regressor = keras.layers.Dense(
            4 * (num_classes + int(background_outputs)), name="box_regressor",
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.001))

    def build(self, input_shape):
        self.fc1.build((input_shape[0], math.prod(input_shape[1:])))
        hidden = (input_shape[0], self.fc_channels)
        for norm in (self.norm1, self.norm2):
            if norm is not None:
                norm.build(hidden)
        self.fc2.build(hidden)
        self.classifier.build(hidden)
        self.box_regressor.build(hidden)

    def compute_output_shape(self, input_shape):
        return {"class_logits": (input_shape[0], self.num_classes + 1),
                "box_deltas": (input_shape[0], 4 * self.num_classes)}

    def call(self, roi_features):
        flat = ops.reshape(roi_features, (-1, math.prod(roi_features.shape[1:])))
        hidden = flat
        for fc, norm in ((self.fc1, self.norm1), (self.fc2, self.norm2)):
            hidden = fc(hidden)
            hidden = self._act(hidden if norm is None else norm(hidden))
        deltas = self.box_regressor(hidden)
        return {"class_logits": self.classifier(hidden),
                "box_deltas": deltas[:, 4:] if self.background_outputs else deltas}

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, fc_channels=self.fc_channels,
                      background_outputs=self.background_outputs,
                      normalization=self.normalization, activation=self.activation)
        return config
