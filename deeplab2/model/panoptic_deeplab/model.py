"""Panoptic-DeepLab: backbone + dual ASPP + dual decoder + prediction heads.

The model takes float images in [0, 255] (normalized inside to
(x - pixel_mean) / pixel_std, by default x / 127.5 - 1) and returns a dict at
input resolution:
    semantic_logits [B, H, W, C], center_heatmap [B, H, W, 1],
    offset [B, H, W, 2] (y, x, in input pixels).
Outputs are upsampled with align-corners bilinear resizing; offsets are
multiplied by the per-axis resize ratio.
"""
import keras
import numpy as np
from keras import ops

from deeplab2 import common
from deeplab2.model.panoptic_deeplab import heads
from deeplab2.model.panoptic_deeplab import decoder as decoder_lib
from deeplab2.model.layers import aspp as aspp_lib
from deeplab2.model.layers import resize

def _rgb(value):
    """A scalar or three values as an (R, G, B) tuple of floats."""
    values = (value,) * 3 if np.ndim(value) == 0 else tuple(value)
    if len(values) != 3:
        raise ValueError(f"expected a number or 3 numbers (R, G, B), got {value!r}")
    return tuple(float(v) for v in values)


# Backbone feature keys (deeplab2.model.backbones.base): the final feature,
# then the low-level features at strides 8 and 4.
DEFAULT_FEATURE_KEYS = ("final", "res3", "res2")


@keras.saving.register_keras_serializable(package="deeplab2")
class PanopticDeepLab(keras.Model):
    """Panoptic-DeepLab (paper 000, Sec. 3.1).

    Args:
        backbone: layer/model mapping a normalized image to a dict of features.
        num_classes: semantic classes.
        feature_keys: backbone keys (final, then low-level coarse to fine);
            the DeepLabV3+ decoder uses only the finest low-level key.
        atrous_rates: ASPP rates (see `aspp.atrous_rates_for`).
        pool_size: ASPP training pooling window (feature pixels) or None.
        semantic_aspp_channels, semantic_decoder_channels,
        semantic_low_level_channels, semantic_head_channels: semantic widths.
        instance_aspp_channels, instance_decoder_channels,
        instance_low_level_channels, instance_head_channels: instance widths
            (the head width is used by both the center and offset heads).
        aspp_sep_conv: depthwise-separable atrous convs in ASPP.
        decoder_sep_conv: depthwise-separable decoder and head convs.
        decoder_variant: a key of `decoders.VARIANTS`.
        semantic_only: drop the instance branch (semantic logits only).
        dual_aspp, dual_decoder: separate instance ASPP / decoder (paper 000
            Table 1 ablations share the semantic ones when False).
        bn_momentum, bn_epsilon, synchronized_bn: batch norm options.
        pixel_mean, pixel_std: input normalization, scalars or (R, G, B).
    """

    def __init__(self, backbone, num_classes,
                 feature_keys=DEFAULT_FEATURE_KEYS, atrous_rates=(6, 12, 18),
                 pool_size=None,
                 semantic_aspp_channels=256, semantic_decoder_channels=256,
                 semantic_low_level_channels=(64, 32),
                 semantic_head_channels=256, instance_aspp_channels=256,
                 instance_decoder_channels=128,
                 instance_low_level_channels=(32, 16),
                 instance_head_channels=32, aspp_sep_conv=True,
                 decoder_sep_conv=True, decoder_variant="panoptic_deeplab",
                 semantic_only=False, dual_aspp=True, dual_decoder=True,
                 bn_momentum=0.99, bn_epsilon=1e-3, synchronized_bn=True,
                 pixel_mean=127.5, pixel_std=127.5, **kwargs):
        super().__init__(**kwargs)
        if decoder_variant not in decoder_lib.VARIANTS:
            raise ValueError(f"unknown decoder_variant {decoder_variant!r}")
        if not dual_decoder and dual_aspp:
            raise ValueError("a shared decoder needs a shared ASPP")
        variant = decoder_lib.VARIANTS[decoder_variant]
        num_low = len(variant["semantic_low_level_channels"])
        if len(semantic_low_level_channels) != num_low or (
                len(instance_low_level_channels) != num_low):
            raise ValueError(f"{decoder_variant} takes {num_low} low-level "
                             "projection widths per branch")
        self.backbone = backbone
        self.num_classes = num_classes
        self.feature_keys = tuple(feature_keys)
        self.atrous_rates = tuple(atrous_rates)
        self.pool_size = None if pool_size is None else tuple(pool_size)
        self.semantic_aspp_channels = semantic_aspp_channels
        self.semantic_decoder_channels = semantic_decoder_channels
        self.semantic_low_level_channels = tuple(semantic_low_level_channels)
        self.semantic_head_channels = semantic_head_channels
        self.instance_aspp_channels = instance_aspp_channels
        self.instance_decoder_channels = instance_decoder_channels
        self.instance_low_level_channels = tuple(instance_low_level_channels)
        self.instance_head_channels = instance_head_channels
        self.aspp_sep_conv = aspp_sep_conv
        self.decoder_sep_conv = decoder_sep_conv
        self.decoder_variant = decoder_variant
        self.semantic_only = semantic_only
        self.dual_aspp = dual_aspp
        self.dual_decoder = dual_decoder
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.synchronized_bn = synchronized_bn
        self.pixel_mean = _rgb(pixel_mean)
        self.pixel_std = _rgb(pixel_std)
        # x / std - mean / std: with the defaults exactly x / 127.5 - 1.
        self._scale = np.array(self.pixel_std, np.float32)
        self._shift = (np.array(self.pixel_mean, np.float64)
                       / np.array(self.pixel_std, np.float64)).astype(np.float32)
        self._low_level_keys = self.feature_keys[1:][-num_low:]

        bn = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon,
                  synchronized_bn=synchronized_bn)

        def make_aspp(channels, name):
            return aspp_lib.ASPP(channels, self.atrous_rates, self.pool_size,
                                 sep_conv=aspp_sep_conv, name=name, **bn)

        def make_decoder(channels, low_level_channels, name):
            return decoder_lib.Decoder(
                channels, low_level_channels,
                fuse_kernel_size=variant["fuse_kernel_size"],
                fuse_num_convs=variant["fuse_num_convs"],
                sep_conv=decoder_sep_conv,
                name=name, **bn)

        def make_head(output_channels, channels, name):
            return heads.PredictionHead(output_channels, channels,
                                        sep_conv=decoder_sep_conv, name=name,
                                        **bn)

        self.semantic_aspp = make_aspp(semantic_aspp_channels, "semantic_aspp")
        self.semantic_decoder = make_decoder(
            semantic_decoder_channels, semantic_low_level_channels,
            "semantic_decoder")
        self.semantic_head = make_head(num_classes, semantic_head_channels,
                                       "semantic_head")
        self.instance_aspp = None
        self.instance_decoder = None
        self.center_head = None
        self.offset_head = None
        if semantic_only:
            return
        if dual_aspp:
            self.instance_aspp = make_aspp(instance_aspp_channels,
                                           "instance_aspp")
        if dual_decoder:
            self.instance_decoder = make_decoder(
                instance_decoder_channels, instance_low_level_channels,
                "instance_decoder")
        self.center_head = make_head(1, instance_head_channels, "center_head")
        self.offset_head = make_head(2, instance_head_channels, "offset_head")

    def call(self, inputs, training=None):
        outputs = self.head_outputs(inputs, training=training)
        return self.upsample_outputs(outputs, ops.shape(inputs)[1:3])

    def head_outputs(self, inputs, training=None):
        """The heads' outputs at the decoder's resolution (stride 4), before
        the upsampling `call` applies; same input as `call`."""
        images = ops.cast(inputs, "float32") / self._scale - self._shift
        features = self.backbone(images, training=training)
        final = features[self.feature_keys[0]]
        low_levels = [features[key] for key in self._low_level_keys]

        semantic_aspp = self.semantic_aspp(final, training=training)
        semantic = self.semantic_decoder([semantic_aspp, *low_levels],
                                         training=training)
        outputs = {common.SEMANTIC_LOGITS:
                   self.semantic_head(semantic, training=training)}
        if not self.semantic_only:
            instance = semantic
            if self.instance_decoder is not None:
                instance_aspp = semantic_aspp
                if self.instance_aspp is not None:
                    instance_aspp = self.instance_aspp(final,
                                                       training=training)
                instance = self.instance_decoder([instance_aspp, *low_levels],
                                                 training=training)
            outputs[common.CENTER_HEATMAP] = self.center_head(
                instance, training=training)
            outputs[common.OFFSET] = self.offset_head(instance,
                                                      training=training)
        return outputs

    @staticmethod
    def upsample_outputs(outputs, size):
        """`head_outputs` upsampled (as float32) to `size`, offsets rescaled:
        what `call` returns for inputs of that size."""
        resized = {}
        for key, value in outputs.items():
            resized[key] = resize.resize_align_corners(
                ops.cast(value, "float32"), size)
            if key == common.OFFSET:
                scale = resize.scale_align_corners(ops.shape(value)[1:3], size)
                resized[key] = resized[key] * ops.reshape(scale, (1, 1, 1, 2))
        return resized

    def get_config(self):
        config = super().get_config()
        config.update(
            backbone=keras.saving.serialize_keras_object(self.backbone),
            num_classes=self.num_classes, feature_keys=self.feature_keys,
            atrous_rates=self.atrous_rates, pool_size=self.pool_size,
            semantic_aspp_channels=self.semantic_aspp_channels,
            semantic_decoder_channels=self.semantic_decoder_channels,
            semantic_low_level_channels=self.semantic_low_level_channels,
            semantic_head_channels=self.semantic_head_channels,
            instance_aspp_channels=self.instance_aspp_channels,
            instance_decoder_channels=self.instance_decoder_channels,
            instance_low_level_channels=self.instance_low_level_channels,
            instance_head_channels=self.instance_head_channels,
            aspp_sep_conv=self.aspp_sep_conv,
            decoder_sep_conv=self.decoder_sep_conv,
            decoder_variant=self.decoder_variant,
            semantic_only=self.semantic_only, dual_aspp=self.dual_aspp,
            dual_decoder=self.dual_decoder, bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon, synchronized_bn=self.synchronized_bn,
            pixel_mean=self.pixel_mean, pixel_std=self.pixel_std)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(
            config["backbone"])
        return cls(**config)
