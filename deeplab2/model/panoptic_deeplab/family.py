"""Panoptic-DeepLab as a meta-architecture: options, model, targets, loss, post-processing."""
from typing import Any, Dict, Mapping

import keras
import tensorflow as tf

from deeplab2 import common
from deeplab2.data.augment import validate_crop_size
from deeplab2.model import backbones
from deeplab2.model.backbones.base import check_output_stride
from deeplab2.model.layers import aspp
from deeplab2.model.meta import (MEAN, OFFSET, SOFTMAX, DenseOutput, MetaArchitecture,
                                 ModelConfig)
from deeplab2.model.panoptic_deeplab import decoder
from deeplab2.model.panoptic_deeplab import deeplab2_import
from deeplab2.model.panoptic_deeplab.loss import PanopticDeepLabLoss
from deeplab2.model.panoptic_deeplab.model import DEFAULT_FEATURE_KEYS, PanopticDeepLab
from deeplab2.model.panoptic_deeplab.postprocess import merge
from deeplab2.model.panoptic_deeplab.postprocess import panoptic_deeplab
from deeplab2.model.panoptic_deeplab.postprocess.panoptic_deeplab import upsampled_argmax
from deeplab2.model.panoptic_deeplab.targets import PanopticDeepLabTargets

# Architecture options and their defaults (paper 000's final model). None
# means "derived": from the output stride (atrous_rates), the decoder variant
# (low-level widths) or `sep_conv` (aspp_sep_conv, decoder_sep_conv).
ARCHITECTURE_DEFAULTS = dict(
    backbone="resnet50",
    backbone_kwargs={},
    multi_grid=None,
    feature_keys=DEFAULT_FEATURE_KEYS,
    atrous_rates=None,
    semantic_aspp_channels=256,
    semantic_decoder_channels=256,
    semantic_low_level_channels=None,
    semantic_head_channels=256,
    instance_aspp_channels=256,
    instance_decoder_channels=128,
    instance_low_level_channels=None,
    instance_head_channels=32,
    sep_conv=True,
    aspp_sep_conv=None,
    decoder_sep_conv=None,
    decoder_variant="panoptic_deeplab",
    semantic_only=False,
    dual_aspp=True,
    dual_decoder=True,
    bn_momentum=0.99,
    bn_epsilon=1e-3,
    synchronized_bn=True,
)
# Post-processing options (paper 000 Sec. 3.2); stuff_area_limit None takes
# the dataset's.
POSTPROCESS_DEFAULTS = dict(center_threshold=0.1, nms_kernel=7, keep_k_centers=200,
                            stuff_area_limit=None)
# Backbone arguments that only say how to initialize the weights.
_INITIALIZATION_KWARGS = ("weights",)



def _tuple_or_none(value):
    return None if value is None else tuple(value)


class PanopticDeepLabArchitecture(MetaArchitecture):
    """Bottom-up panoptic segmentation (paper 000): semantic logits, a center
    heatmap and center offsets, grouped into instances after the network."""

    name = "panoptic_deeplab"
    output_keys = (common.SEMANTIC_LOGITS, common.CENTER_HEATMAP, common.OFFSET)
    dense_outputs = {
        common.SEMANTIC_LOGITS: DenseOutput(SOFTMAX, common.SEMANTIC_PROBABILITIES),
        common.CENTER_HEATMAP: DenseOutput(MEAN, common.CENTER_HEATMAP),
        common.OFFSET: DenseOutput(OFFSET, common.OFFSET),
    }
    visual_outputs = (common.CENTER_HEATMAP, common.OFFSET)
    foreign_checkpoint_formats = (deeplab2_import.foreign_format,)
    # int8 noise in the instance branch made plateaus and bumps in the center
    # heatmap, hence split instances. On 150 synthetic train images the
    # quickstart model lost 2.5 PQ points with float heads, 0.7 with the
    # instance decoder float too; the semantic head's argmax keeps as well
    # quantized (0.7), which saves a sixth of the int8 file's time.
    int8_float_layers = ("instance_decoder", "center_head", "offset_head")

    def resolve(self, config: ModelConfig) -> ModelConfig:
        check_output_stride(config.output_stride)
        if config.crop_size is not None:
            validate_crop_size(config.crop_size, config.output_stride)
        arch = self.complete_options(config.architecture, ARCHITECTURE_DEFAULTS,
                                     "architecture")
        if arch["backbone"] not in backbones.backbone_names():
            raise ValueError(f"unknown backbone {arch['backbone']!r}; known backbones: "
                             f"{', '.join(backbones.backbone_names())}.")
        if arch["decoder_variant"] not in decoder.VARIANTS:
            raise ValueError(f"unknown decoder_variant {arch['decoder_variant']!r}; "
                             f"known: {', '.join(decoder.VARIANTS)}.")
        variant = decoder.VARIANTS[arch["decoder_variant"]]
        if arch["atrous_rates"] is None:
            arch["atrous_rates"] = aspp.atrous_rates_for(config.output_stride)
        for branch in ("semantic", "instance"):
            key = f"{branch}_low_level_channels"
            if arch[key] is None:
                arch[key] = variant[key]
        for key in ("aspp_sep_conv", "decoder_sep_conv"):
            if arch[key] is None:
                arch[key] = arch["sep_conv"]
        for key in ("feature_keys", "atrous_rates", "semantic_low_level_channels",
                    "instance_low_level_channels"):
            arch[key] = list(arch[key])
        arch["multi_grid"] = _tuple_or_none(arch["multi_grid"])
        if arch["multi_grid"] is not None:
            arch["multi_grid"] = list(arch["multi_grid"])
        arch["backbone_kwargs"] = dict(arch["backbone_kwargs"] or {})

        post = self.complete_options(config.postprocess, POSTPROCESS_DEFAULTS, "postprocess")
        if post["stuff_area_limit"] is None:
            post["stuff_area_limit"] = config.dataset.stuff_area_limit
        kernel = post["nms_kernel"]
        if not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"nms_kernel must be a positive odd integer, got {kernel!r}.")
        keep_k = post["keep_k_centers"]
        if not isinstance(keep_k, int) or not 0 < keep_k < config.dataset.label_divisor:
            raise ValueError(f"keep_k_centers ({keep_k!r}) must be an integer in [1, "
                             f"label_divisor={config.dataset.label_divisor}) to keep "
                             "panoptic ids unique.")
        if not arch["semantic_only"] and not config.dataset.thing_ids:
            raise ValueError(f"dataset {config.dataset.name!r} has no thing classes: "
                             "set semantic_only = True.")
        return config.replace(architecture=arch, postprocess=post)

    def build(self, config: ModelConfig, pretrained: bool = True) -> keras.Model:
        """The model; `pretrained=False` skips downloading backbone weights
        (e.g. when a checkpoint will overwrite them)."""
        arch = config.architecture
        backbone_kwargs = dict(arch["backbone_kwargs"])
        if not pretrained:
            for key in _INITIALIZATION_KWARGS:
                backbone_kwargs.pop(key, None)
        if arch["multi_grid"] is not None:
            backbone_kwargs["multi_grid"] = tuple(arch["multi_grid"])
        feature_extractor = backbones.get_backbone(
            arch["backbone"], output_stride=config.output_stride,
            bn_epsilon=arch["bn_epsilon"], **backbone_kwargs)
        # One batch-norm epsilon, momentum and synchronization for the whole
        # model, backbone included.
        for layer in feature_extractor._flatten_layers():
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = arch["bn_momentum"]
                layer.synchronized = arch["synchronized_bn"]
        return PanopticDeepLab(
            feature_extractor, config.dataset.num_classes,
            feature_keys=tuple(arch["feature_keys"]),
            atrous_rates=tuple(arch["atrous_rates"]),
            pool_size=aspp.pool_size_for(config.crop_size, config.output_stride),
            semantic_aspp_channels=arch["semantic_aspp_channels"],
            semantic_decoder_channels=arch["semantic_decoder_channels"],
            semantic_low_level_channels=tuple(arch["semantic_low_level_channels"]),
            semantic_head_channels=arch["semantic_head_channels"],
            instance_aspp_channels=arch["instance_aspp_channels"],
            instance_decoder_channels=arch["instance_decoder_channels"],
            instance_low_level_channels=tuple(arch["instance_low_level_channels"]),
            instance_head_channels=arch["instance_head_channels"],
            aspp_sep_conv=arch["aspp_sep_conv"], decoder_sep_conv=arch["decoder_sep_conv"],
            decoder_variant=arch["decoder_variant"], semantic_only=arch["semantic_only"],
            dual_aspp=arch["dual_aspp"], dual_decoder=arch["dual_decoder"],
            bn_momentum=arch["bn_momentum"], bn_epsilon=arch["bn_epsilon"],
            synchronized_bn=arch["synchronized_bn"], pixel_mean=config.pixel_mean,
            pixel_std=config.pixel_std, name=f"panoptic_deeplab_{arch['backbone']}")

    def training_targets(self, config: ModelConfig) -> PanopticDeepLabTargets:
        return PanopticDeepLabTargets(config.dataset)

    def training_loss(self, config: ModelConfig) -> PanopticDeepLabLoss:
        return PanopticDeepLabLoss(ignore_label=config.dataset.ignore_label,
                                   semantic_only=config.architecture["semantic_only"])

    def bfloat16_float_layers(self, config: ModelConfig):
        # bfloat16's 8-bit mantissa rounds the heatmap into plateaus of equal
        # values, each a cluster of keypoint-NMS peaks: on 150 synthetic train
        # images the quickstart model lost 2.35 PQ points in bfloat16, 0.03
        # with these two heads in float32 (the semantic head's too: 0.03).
        if config.architecture["semantic_only"]:
            return ()
        return ("center_head", "offset_head")

    def network_outputs(self, model: keras.Model, images: tf.Tensor) -> Dict[str, tf.Tensor]:
        # At the decoder's resolution (stride 4): 1/16 of the bytes, and the
        # upsampling stays float32 however the network file is quantized.
        return model.head_outputs(images, training=False)

    def upsample_network_outputs(self, outputs: Dict[str, tf.Tensor], size
                                 ) -> Dict[str, tf.Tensor]:
        return PanopticDeepLab.upsample_outputs(outputs, size)

    def postprocess_network_outputs(self, outputs: Dict[str, tf.Tensor], size,
                                    config: ModelConfig, options: Mapping[str, Any]
                                    ) -> Dict[str, tf.Tensor]:
        # The heads at stride 4 are upsampled inside the compiled
        # post-processing: the full-resolution logits are never stored.
        info = config.dataset
        if config.architecture["semantic_only"]:
            semantic = _compiled_upsampled_argmax(outputs[common.SEMANTIC_LOGITS],
                                                  tf.stack(size))
            return _semantic_only(semantic, info, options["stuff_area_limit"],
                                  options["keep_k_centers"])
        return panoptic_deeplab(
            outputs[common.SEMANTIC_LOGITS], outputs[common.CENTER_HEATMAP],
            outputs[common.OFFSET], output_size=size, **self._postprocess_options(
                info, options))

    def postprocess(self, outputs: Dict[str, tf.Tensor], config: ModelConfig,
                    options: Mapping[str, Any]) -> Dict[str, tf.Tensor]:
        info = config.dataset
        if config.architecture["semantic_only"]:
            semantic = tf.argmax(outputs[common.SEMANTIC_PROBABILITIES], axis=-1,
                                 output_type=tf.int32)
            return _semantic_only(semantic, info, options["stuff_area_limit"],
                                  options["keep_k_centers"])
        return panoptic_deeplab(
            None, outputs[common.CENTER_HEATMAP], outputs[common.OFFSET],
            semantic_probabilities=outputs[common.SEMANTIC_PROBABILITIES],
            **self._postprocess_options(info, options))

    @staticmethod
    def _postprocess_options(info, options: Mapping[str, Any]) -> Dict[str, Any]:
        return dict(thing_class_ids=info.thing_ids, label_divisor=info.label_divisor,
                    ignore_label=info.ignore_label,
                    stuff_area_limit=options["stuff_area_limit"],
                    center_threshold=options["center_threshold"],
                    nms_kernel=options["nms_kernel"],
                    keep_k_centers=options["keep_k_centers"])


_compiled_upsampled_argmax = tf.function(upsampled_argmax, jit_compile=True, autograph=False)


def _semantic_only(semantic: tf.Tensor, info, stuff_area_limit: int,
                   num_rows: int) -> Dict[str, tf.Tensor]:
    """Predictions of a model without instance branch from its semantic map:
    the semantic map, stuff segments (thing pixels are void), no instances."""
    stuff_table = merge.stuff_ids(semantic, num_classes=info.num_classes,
                                  thing_class_ids=info.thing_ids,
                                  label_divisor=info.label_divisor,
                                  ignore_label=info.ignore_label,
                                  stuff_area_limit=stuff_area_limit)
    batch = tf.shape(semantic)[0]
    return {
        common.SEMANTIC: semantic,
        common.INSTANCE: tf.zeros_like(semantic),
        common.PANOPTIC: tf.gather(stuff_table, semantic, batch_dims=1),
        common.INSTANCE_SCORES: tf.zeros([batch, num_rows], tf.float32),
        common.INSTANCE_CLASSES: tf.fill([batch, num_rows], info.ignore_label),
        common.INSTANCE_PANOPTIC_IDS: tf.fill([batch, num_rows], info.ignore_panoptic_id),
    }
