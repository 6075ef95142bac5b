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

# Options of the Mask R-CNN part every top-down family shares, and their
# defaults (Mask R-CNN R50-FPN [std]). None means "derived" (see above).
MASK_RCNN_DEFAULTS = dict(
    backbone="resnet50",
    backbone_kwargs={},
    bn_momentum=0.99,
    bn_epsilon=1e-5,
    synchronized_bn=None,
    frozen_bn=True,
    freeze_at=2,
    fpn_channels=256,
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
    box_regression_beta=0.0,
)
# Panoptic FPN's architecture options (paper 003).
ARCHITECTURE_DEFAULTS = dict(
    MASK_RCNN_DEFAULTS,
    semantic_channels=128,
    semantic_groups=32,
    semantic_other_class=None,
    instance_loss_weight=None,
    semantic_loss_weight=None,
)
# Fusion options (SPEC section 7 item 1); stuff_area_limit None takes the dataset's.
POSTPROCESS_DEFAULTS = dict(score_threshold=0.5, overlap_threshold=0.5, stuff_area_limit=None)
# (instance_loss_weight, semantic_loss_weight) by dataset name; others (1, 1).
LOSS_WEIGHTS = {"coco": (1.0, 0.5), "cityscapes": (0.5, 1.0)}
# Datasets whose semantic branch predicts 'other' for things by default.
OTHER_CLASS_DATASETS = ("coco",)
# Backbone arguments that only say how to initialize the weights.
_INITIALIZATION_KWARGS = ("weights",)

_POSITIVE_INTS = ("fpn_channels", "box_fc_channels", "mask_channels",
                  "rpn_pre_nms_top_k_train", "rpn_pre_nms_top_k_test",
                  "rpn_post_nms_top_k", "max_detections", "max_instances")
_FRACTIONS = ("rpn_nms_threshold", "detection_score_threshold", "detection_nms")
_BOOLS = ("frozen_bn", "synchronized_bn")
_NON_NEGATIVE = ("box_regression_beta",)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_option(condition: bool, family: str, name: str, rule: str, value) -> None:
    """Raises ValueError naming the family's option unless `condition`."""
    if not condition:
        raise ValueError(f"{family} option {name} must be {rule}, got {value!r}.")


def check_options(arch: Dict, family: str, *, positive_ints=(), fractions=(), bools=(),
                  non_negative=()) -> None:
    """Checks groups of options: positive ints, numbers in [0, 1], bools, numbers >= 0."""
    for key in positive_ints:
        check_option(_is_int(arch[key]) and arch[key] > 0, family, key, "a positive integer",
                     arch[key])
    for key in fractions:
        check_option(_is_number(arch[key]) and 0 <= arch[key] <= 1, family, key,
                     "a number in [0, 1]", arch[key])
    for key in bools:
        check_option(isinstance(arch[key], bool), family, key, "True or False", arch[key])
    for key in non_negative:
        check_option(_is_number(arch[key]) and arch[key] >= 0, family, key, "a number >= 0",
                     arch[key])


def _check(condition: bool, name: str, rule: str, value) -> None:
    check_option(condition, "panoptic_fpn", name, rule, value)


def resolve_mask_rcnn_options(arch: Dict, config: ModelConfig, family: str) -> Dict:
    """Fills in and validates the MASK_RCNN_DEFAULTS options of `arch`."""
    info = config.dataset
    if arch["backbone"] not in backbones.backbone_names():
        raise ValueError(f"unknown backbone {arch['backbone']!r}; known backbones: "
                         f"{', '.join(backbones.backbone_names())}.")
    arch["backbone_kwargs"] = dict(arch["backbone_kwargs"] or {})
    if arch["synchronized_bn"] is None:
        arch["synchronized_bn"] = not arch["frozen_bn"]
    check_options(arch, family, positive_ints=_POSITIVE_INTS, fractions=_FRACTIONS,
                  bools=_BOOLS, non_negative=_NON_NEGATIVE)

    def check(condition, name, rule):
        check_option(condition, family, name, rule, arch[name])

    check(_is_number(arch["bn_momentum"]) and 0 <= arch["bn_momentum"] < 1, "bn_momentum",
          "a number in [0, 1)")
    check(_is_number(arch["bn_epsilon"]) and arch["bn_epsilon"] > 0, "bn_epsilon",
          "a positive number")
    check(arch["freeze_at"] in FREEZE_AT and _is_int(arch["freeze_at"]), "freeze_at",
          f"one of {FREEZE_AT} (0: nothing frozen; k: the stem and res2..res<k>)")
    check(_is_int(arch["roi_samples"]) and arch["roi_samples"] >= 4, "roi_samples",
          "an integer >= 4 (a quarter of them may be foreground)")
    check(arch["max_detections"] < info.label_divisor, "max_detections",
          f"below the dataset's label_divisor ({info.label_divisor}) to keep panoptic ids "
          "unique")
    return arch


def _resolve_architecture(arch: Dict, config: ModelConfig) -> Dict:
    """Fills in the derived architecture options and validates them all."""
    info = config.dataset
    arch = resolve_mask_rcnn_options(arch, config, "panoptic_fpn")
    if arch["semantic_other_class"] is None:
        arch["semantic_other_class"] = info.name in OTHER_CLASS_DATASETS
    weights = LOSS_WEIGHTS.get(info.name, (1.0, 1.0))
    for key, default in zip(("instance_loss_weight", "semantic_loss_weight"), weights):
        if arch[key] is None:
            arch[key] = default
    check_options(arch, "panoptic_fpn", positive_ints=("semantic_channels", "semantic_groups"),
                  bools=("semantic_other_class",),
                  non_negative=("instance_loss_weight", "semantic_loss_weight"))
    _check(arch["semantic_channels"] % arch["semantic_groups"] == 0, "semantic_channels",
           f"a multiple of semantic_groups ({arch['semantic_groups']})",
           arch["semantic_channels"])
    return arch


class PanopticFPNArchitecture(MetaArchitecture):
    """Top-down panoptic segmentation (paper 003): Mask R-CNN instances and a
    semantic FPN branch on one feature pyramid, fused after the network."""

    name = "panoptic_fpn"
    output_keys = OUTPUT_KEYS
    dense_outputs = {}
    instance_outputs = (common.BOXES,)
    half_pixel_resize = True

    #: Options and defaults, completed by `resolve`; a subclass family sets its own.
    architecture_defaults = ARCHITECTURE_DEFAULTS
    postprocess_defaults = POSTPROCESS_DEFAULTS

    def resolve(self, config: ModelConfig) -> ModelConfig:
        if config.output_stride != SIZE_DIVISOR:
            raise ValueError(f"{self.name} needs output_stride {SIZE_DIVISOR} (FPN levels "
                             f"at strides 4..32), got {config.output_stride}.")
        if config.crop_size is not None:
            self.check_input_size(config.crop_size, config)
        if not config.dataset.thing_ids:
            raise ValueError(f"dataset {config.dataset.name!r} has no thing classes to "
                             f"detect: {self.name} needs some.")
        arch = self.resolve_architecture(
            self.complete_options(config.architecture, self.architecture_defaults,
                                  "architecture"), config)
        post = self.complete_options(config.postprocess, self.postprocess_defaults,
                                     "postprocess")
        if post["stuff_area_limit"] is None:
            post["stuff_area_limit"] = self.default_stuff_area_limit(config.dataset)
        check_options(post, self.name, fractions=sorted(set(post) - {"stuff_area_limit"}))
        check_option(_is_int(post["stuff_area_limit"]) and post["stuff_area_limit"] >= 0,
                     self.name, "stuff_area_limit", "an integer >= 0", post["stuff_area_limit"])
        return config.replace(architecture=arch, postprocess=post)

    def default_stuff_area_limit(self, info) -> int:
        """The fusion's stuff area limit when the options leave it None: the dataset's."""
        return info.stuff_area_limit

    def resolve_architecture(self, arch: Dict, config: ModelConfig) -> Dict:
        """Fills in the derived options of a completed architecture dict and
        validates them all."""
        return _resolve_architecture(arch, config)

    def check_input_size(self, size, config) -> Tuple[int, int]:
        sides = tuple(size)
        if len(sides) != 2 or not all(_is_int(s) and s > 0 and s % SIZE_DIVISOR == 0
                                      for s in sides):
            raise ValueError(f"{self.name} takes (height, width) sizes that are multiples "
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
        return PanopticFPN(
            self.build_backbone(arch, pretrained), len(config.dataset.thing_ids),
            semantic_classes.num_channels(config.dataset, arch["semantic_other_class"]),
            semantic_channels=arch["semantic_channels"],
            semantic_groups=arch["semantic_groups"], **self.mask_rcnn_kwargs(config),
            name=f"panoptic_fpn_{arch['backbone']}")

    @staticmethod
    def build_backbone(arch: Mapping[str, Any], pretrained: bool):
        """The backbone of resolved options, batch norm set and stages frozen."""
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
        return backbone

    @staticmethod
    def mask_rcnn_kwargs(config: ModelConfig) -> Dict[str, Any]:
        """`PanopticFPN` keyword arguments of the shared Mask R-CNN options."""
        arch = config.architecture
        keys = ("fpn_channels", "box_fc_channels", "mask_channels", "rpn_pre_nms_top_k_train",
                "rpn_pre_nms_top_k_test", "rpn_post_nms_top_k", "rpn_nms_threshold",
                "roi_samples", "detection_score_threshold", "detection_nms", "max_detections")
        return dict({key: arch[key] for key in keys}, pixel_mean=config.pixel_mean,
                    pixel_std=config.pixel_std)

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
