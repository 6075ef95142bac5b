"""Panoptic FPN as a meta-architecture: options, model, targets, loss, post-processing.

Options follow SPEC_TOP_DOWN.md sections 1, 2 and 7. Decisions:
- The detection numbers (score threshold, NMS, count) are architecture
  options, not post-processing ones: the model runs the mask head on the final
  detections, so they are fixed when it is built (a Predictor's post-processing
  override could not change them).
- `semantic_other_class` None derives from the dataset: True on COCO (53 stuff
  + 'other', paper 003 section 4.1), False elsewhere (all classes predicted,
  Cityscapes' rule). See `semantic_classes`.
- The loss weights None derive from the dataset (section 2 / 7 item 2): COCO
  lambda_i 1, lambda_s 0.5; Cityscapes lambda_i 0.5, lambda_s 1; otherwise 1
  and 1 [ours].
- `synchronized_bn` None derives from `frozen_bn`: a frozen batch norm has no
  statistics to synchronize.
- Input sides are multiples of 32 (`padded_size`); `output_stride` must be 32.
  The model and post-processing also run traced with unknown sides (an
  exported model serves any image size; see `model`).
- `instance_outputs`: the post-processing also returns BOXES, the detected
  box of each instance, which prediction and export pass through.
"""
from typing import Any, Dict, Mapping, Tuple

import keras
import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2.model import backbones
from deeplab2.model.meta import MetaArchitecture, ModelConfig
from deeplab2.model.panoptic_fpn import semantic_classes
from deeplab2.model.panoptic_fpn.freezing import FREEZE_AT, freeze_backbone
from deeplab2.model.panoptic_fpn.loss import PanopticFPNLoss
from deeplab2.model.panoptic_fpn.model import OUTPUT_KEYS, SIZE_DIVISOR, PanopticFPN
from deeplab2.model.panoptic_fpn.postprocess import panoptic_fpn_predictions
from deeplab2.model.panoptic_fpn.targets import MODEL_TARGET_KEYS, PanopticFPNTargets

# Architecture options and their defaults (paper 003, Mask R-CNN R50-FPN [std]).
# None means "derived" (see the module docstring).
ARCHITECTURE_DEFAULTS = dict(
    backbone="resnet50",
    backbone_kwargs={},
    bn_momentum=0.99,
    bn_epsilon=1e-5,
    synchronized_bn=None,
    frozen_bn=True,
    freeze_at=2,
    fpn_channels=256,
    semantic_channels=128,
    semantic_groups=32,
    semantic_other_class=None,
    box_fc_channels=1024,
    mask_channels=256,
    rpn_pre_nms_top_k_train=2000,
    rpn_pre_nms_top_k_test=1000,
    rpn_post_nms_top_k=1000,
    rpn_nms_threshold=0.7,
    roi_samples=512,
    detection_score_threshold=0.05,
    detection_nms=0.5,
    max_detections=100,
    max_instances=100,
    instance_loss_weight=None,
    semantic_loss_weight=None,
    box_regression_beta=0.0,
)
# Fusion options (SPEC section 7 item 1); stuff_area_limit None takes the dataset's.
POSTPROCESS_DEFAULTS = dict(score_threshold=0.5, overlap_threshold=0.5, stuff_area_limit=None)
# (instance_loss_weight, semantic_loss_weight) by dataset name; others (1, 1).
LOSS_WEIGHTS = {"coco": (1.0, 0.5), "cityscapes": (0.5, 1.0)}
# Datasets whose semantic branch predicts 'other' for things by default.
OTHER_CLASS_DATASETS = ("coco",)
# Backbone arguments that only say how to initialize the weights.
_INITIALIZATION_KWARGS = ("weights",)

_POSITIVE_INTS = ("fpn_channels", "semantic_channels", "semantic_groups", "box_fc_channels",
                  "mask_channels", "rpn_pre_nms_top_k_train", "rpn_pre_nms_top_k_test",
                  "rpn_post_nms_top_k", "max_detections", "max_instances")
_FRACTIONS = ("rpn_nms_threshold", "detection_score_threshold", "detection_nms")
_BOOLS = ("frozen_bn", "synchronized_bn", "semantic_other_class")
_NON_NEGATIVE = ("instance_loss_weight", "semantic_loss_weight", "box_regression_beta")



def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(condition: bool, name: str, rule: str, value) -> None:
    if not condition:
        raise ValueError(f"panoptic_fpn option {name} must be {rule}, got {value!r}.")


def _resolve_architecture(arch: Dict, config: ModelConfig) -> Dict:
    """Fills in the derived architecture options and validates them all."""
    info = config.dataset
    if arch["backbone"] not in backbones.backbone_names():
        raise ValueError(f"unknown backbone {arch['backbone']!r}; known backbones: "
                         f"{', '.join(backbones.backbone_names())}.")
    arch["backbone_kwargs"] = dict(arch["backbone_kwargs"] or {})
    if arch["synchronized_bn"] is None:
        arch["synchronized_bn"] = not arch["frozen_bn"]
    if arch["semantic_other_class"] is None:
        arch["semantic_other_class"] = info.name in OTHER_CLASS_DATASETS
    weights = LOSS_WEIGHTS.get(info.name, (1.0, 1.0))
    for key, default in zip(("instance_loss_weight", "semantic_loss_weight"), weights):
        if arch[key] is None:
            arch[key] = default
    for key in _POSITIVE_INTS:
        _check(_is_int(arch[key]) and arch[key] > 0, key, "a positive integer", arch[key])
    for key in _FRACTIONS:
        _check(_is_number(arch[key]) and 0 <= arch[key] <= 1, key, "a number in [0, 1]",
               arch[key])
    for key in _BOOLS:
        _check(isinstance(arch[key], bool), key, "True or False", arch[key])
    for key in _NON_NEGATIVE:
        _check(_is_number(arch[key]) and arch[key] >= 0, key, "a number >= 0", arch[key])
    _check(_is_number(arch["bn_momentum"]) and 0 <= arch["bn_momentum"] < 1, "bn_momentum",
           "a number in [0, 1)", arch["bn_momentum"])
    _check(_is_number(arch["bn_epsilon"]) and arch["bn_epsilon"] > 0, "bn_epsilon",
           "a positive number", arch["bn_epsilon"])
    _check(arch["freeze_at"] in FREEZE_AT and _is_int(arch["freeze_at"]), "freeze_at",
           f"one of {FREEZE_AT} (0: nothing frozen; k: the stem and res2..res<k>)",
           arch["freeze_at"])
    _check(arch["semantic_channels"] % arch["semantic_groups"] == 0, "semantic_channels",
           f"a multiple of semantic_groups ({arch['semantic_groups']})",
           arch["semantic_channels"])
    _check(_is_int(arch["roi_samples"]) and arch["roi_samples"] >= 4, "roi_samples",
           "an integer >= 4 (a quarter of them may be foreground)", arch["roi_samples"])
    _check(arch["max_detections"] < info.label_divisor, "max_detections",
           f"below the dataset's label_divisor ({info.label_divisor}) to keep panoptic "
           "ids unique", arch["max_detections"])
    return arch


class PanopticFPNArchitecture(MetaArchitecture):
    """Top-down panoptic segmentation (paper 003): Mask R-CNN instances and a
    semantic FPN branch on one feature pyramid, fused after the network."""

    name = "panoptic_fpn"
    output_keys = OUTPUT_KEYS
    dense_outputs = {}
    instance_outputs = (common.BOXES,)
    half_pixel_resize = True

    def resolve(self, config: ModelConfig) -> ModelConfig:
        if config.output_stride != SIZE_DIVISOR:
            raise ValueError(f"panoptic_fpn needs output_stride {SIZE_DIVISOR} (FPN levels "
                             f"at strides 4..32), got {config.output_stride}.")
        if config.crop_size is not None:
            self.check_input_size(config.crop_size, config)
        if not config.dataset.thing_ids:
            raise ValueError(f"dataset {config.dataset.name!r} has no thing classes to "
                             "detect: panoptic_fpn needs some.")
        arch = _resolve_architecture(
            self.complete_options(config.architecture, ARCHITECTURE_DEFAULTS,
                                  "architecture"), config)
        post = self.complete_options(config.postprocess, POSTPROCESS_DEFAULTS, "postprocess")
        if post["stuff_area_limit"] is None:
            post["stuff_area_limit"] = config.dataset.stuff_area_limit
        for key in ("score_threshold", "overlap_threshold"):
            _check(_is_number(post[key]) and 0 <= post[key] <= 1, key, "a number in [0, 1]",
                   post[key])
        _check(_is_int(post["stuff_area_limit"]) and post["stuff_area_limit"] >= 0,
               "stuff_area_limit", "an integer >= 0", post["stuff_area_limit"])
        return config.replace(architecture=arch, postprocess=post)

    def check_input_size(self, size, config) -> Tuple[int, int]:
        sides = tuple(size)
        if len(sides) != 2 or not all(_is_int(s) and s > 0 and s % SIZE_DIVISOR == 0
                                      for s in sides):
            raise ValueError(f"panoptic_fpn takes (height, width) sizes that are multiples "
                             f"of {SIZE_DIVISOR} (e.g. 512x1024, 800x1344), got {tuple(size)}.")
        return sides

    def padded_size(self, size, config):
        """The smallest multiple of 32 that is >= `size` (at least 32)."""
        k = (size + SIZE_DIVISOR - 1) // SIZE_DIVISOR
        if isinstance(k, int):
            return max(k, 1) * SIZE_DIVISOR
        return tf.maximum(k, 1) * SIZE_DIVISOR

    def scaled_size(self, size, scale: float, config):
        """The multiple of 32 nearest to `size * scale` (at least 32), in float32."""
        factor = np.float32(scale / SIZE_DIVISOR)
        if isinstance(size, int):
            return max(int(np.round(np.float32(size) * factor)), 1) * SIZE_DIVISOR
        k = tf.cast(tf.round(tf.cast(size, tf.float32) * factor), tf.int32)
        return tf.maximum(k, 1) * SIZE_DIVISOR

    def build(self, config: ModelConfig, pretrained: bool = True) -> keras.Model:
        """The model; `pretrained=False` skips downloading backbone weights."""
        arch = config.architecture
        backbone_kwargs = dict(arch["backbone_kwargs"])
        if not pretrained:
            for key in _INITIALIZATION_KWARGS:
                backbone_kwargs.pop(key, None)
        backbone = backbones.get_backbone(arch["backbone"], output_stride=SIZE_DIVISOR,
                                          bn_epsilon=arch["bn_epsilon"], **backbone_kwargs)
        for layer in backbone._flatten_layers():
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = arch["bn_momentum"]
                layer.synchronized = arch["synchronized_bn"]
        freeze_backbone(backbone, freeze_at=arch["freeze_at"], frozen_bn=arch["frozen_bn"])
        return PanopticFPN(
            backbone, len(config.dataset.thing_ids),
            semantic_classes.num_channels(config.dataset, arch["semantic_other_class"]),
            fpn_channels=arch["fpn_channels"], semantic_channels=arch["semantic_channels"],
            semantic_groups=arch["semantic_groups"], box_fc_channels=arch["box_fc_channels"],
            mask_channels=arch["mask_channels"],
            rpn_pre_nms_top_k_train=arch["rpn_pre_nms_top_k_train"],
            rpn_pre_nms_top_k_test=arch["rpn_pre_nms_top_k_test"],
            rpn_post_nms_top_k=arch["rpn_post_nms_top_k"],
            rpn_nms_threshold=arch["rpn_nms_threshold"], roi_samples=arch["roi_samples"],
            detection_score_threshold=arch["detection_score_threshold"],
            detection_nms=arch["detection_nms"], max_detections=arch["max_detections"],
            pixel_mean=config.pixel_mean, pixel_std=config.pixel_std,
            name=f"panoptic_fpn_{arch['backbone']}")

    def training_targets(self, config: ModelConfig) -> PanopticFPNTargets:
        arch = config.architecture
        return PanopticFPNTargets(config.dataset,
                                  semantic_other_class=arch["semantic_other_class"],
                                  max_instances=arch["max_instances"])

    def training_loss(self, config: ModelConfig) -> PanopticFPNLoss:
        arch = config.architecture
        return PanopticFPNLoss(instance_weight=arch["instance_loss_weight"],
                               semantic_weight=arch["semantic_loss_weight"],
                               box_regression_beta=arch["box_regression_beta"])

    def training_outputs(self, model: keras.Model,
                         batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """The model on the images with its ground truth and sampling seed."""
        return model(batch[common.IMAGE], training=True,
                     targets={key: batch[key] for key in MODEL_TARGET_KEYS})

    def postprocess(self, outputs: Dict[str, tf.Tensor], config: ModelConfig,
                    options: Mapping[str, Any]) -> Dict[str, tf.Tensor]:
        return panoptic_fpn_predictions(
            outputs, config.dataset,
            semantic_other_class=config.architecture["semantic_other_class"],
            score_threshold=options["score_threshold"],
            overlap_threshold=options["overlap_threshold"],
            stuff_area_limit=options["stuff_area_limit"])
