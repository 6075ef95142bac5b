"""Seamless as a meta-architecture: options, model, targets, loss, post-processing.

The Mask R-CNN options, input sizes (multiples of 32, output_stride 32),
training inputs and fusion are Panoptic FPN's (`panoptic_fpn.family`); the
rest follows SPEC_TOP_DOWN.md section 4. Decisions:
- `backbone_activation` "leaky_relu": in-place ABN's LeakyReLU(0.01) in the
  backbone too, where it takes one (the ResNets); other backbones
  (MobileNetV3 of the quickstart) keep their own. The backbone's batch norm
  is frozen by default (`frozen_bn`, stem and res2 frozen), the authors'
  code default for the paper's main rows; `frozen_bn=False` trains it with
  synchronized batch norm ("no freeze").
- By dataset (None options): Mapillary Vistas has two extra FPN levels (P6,
  P7), anchors of size 2 * stride with ratios (0.2, 0.5, 1, 2, 5) and 256
  detections; every other dataset one extra level (P6), the standard anchors
  and 100 detections.
- The batch norm of the FPN, RPN and semantic head takes the backbone's
  `bn_momentum` and `bn_epsilon` (0.99, 1e-5).
- The semantic head predicts every dataset class but void, things included
  (leftover thing pixels become void at fusion).
- Loss weights 1 (the authors' code); the semantic term averages each image's
  worst 25% pixels (`semantic_top_fraction`).
- Fusion (paper 002 section 3.5) is Panoptic FPN's `fuse_panoptic` with score
  threshold 0.5, the 50% unassigned-pixel rule (`overlap_threshold` 0.5) and
  a stuff area limit of 4096 pixels on the paper's datasets (Cityscapes,
  Vistas, and COCO); on other datasets (the small synthetic images) the
  dataset's own limit.
"""
from typing import Any, Dict, Mapping

import keras
import tensorflow as tf

from deeplab2.model import backbones
from deeplab2.model.meta import ModelConfig
from deeplab2.model.panoptic_fpn import semantic_classes
from deeplab2.model.panoptic_fpn.family import (MASK_RCNN_DEFAULTS, PanopticFPNArchitecture,
                                                check_option, check_options,
                                                resolve_mask_rcnn_options)
from deeplab2.model.panoptic_fpn.model import OUTPUT_KEYS
from deeplab2.model.panoptic_fpn.postprocess import panoptic_fpn_predictions
from deeplab2.model.panoptic_fpn.targets import PanopticFPNTargets
from deeplab2.model.seamless.loss import SeamlessLoss
from deeplab2.model.seamless.model import Seamless
from deeplab2.model.top_down import normalization as norms
from deeplab2.model.top_down.anchors import RATIOS, SIZES, AnchorSet

NAME = "seamless"
ARCHITECTURE_DEFAULTS = dict(
    MASK_RCNN_DEFAULTS,
    max_detections=None,
    backbone_activation="leaky_relu",
    activation="leaky_relu",
    neck_normalization="batch_norm",
    head_normalization="group_norm",
    fpn_extra_levels=None,
    anchor_sizes=None,
    anchor_ratios=None,
    box_sampling_ratio=4,
    semantic_channels=128,
    semantic_dilation_rate=6,
    semantic_pool_size=64,
    semantic_top_fraction=0.25,
    instance_loss_weight=1.0,
    semantic_loss_weight=1.0,
)
POSTPROCESS_DEFAULTS = dict(score_threshold=0.5, overlap_threshold=0.5, stuff_area_limit=None)
# Paper 002 section 3.5: stuff segments below 4096 pixels become void "on every dataset".
STUFF_AREA_LIMIT = 4096
PAPER_DATASETS = ("cityscapes", "mapillary_vistas", "mapillary_vistas_v2", "coco")
_VISTAS = (2, tuple(2.0 * 4 * 2 ** i for i in range(6)), (0.2, 0.5, 1.0, 2.0, 5.0), 256)
# By dataset name: (fpn_extra_levels, anchor_sizes, anchor_ratios,
# max_detections); other datasets take _DEFAULT.
DATASET_DEFAULTS = {"mapillary_vistas": _VISTAS, "mapillary_vistas_v2": _VISTAS}
_DEFAULT = (1, SIZES, RATIOS, 100)
_DERIVED = ("fpn_extra_levels", "anchor_sizes", "anchor_ratios", "max_detections")


def anchor_set(arch: Mapping[str, Any]) -> AnchorSet:
    """The anchors of resolved options, which the model and the loss share."""
    return AnchorSet(arch["anchor_sizes"], arch["anchor_ratios"])


def _positive_numbers(values) -> bool:
    return (isinstance(values, (list, tuple)) and len(values) > 0
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                    for v in values))


class SeamlessArchitecture(PanopticFPNArchitecture):
    """Top-down panoptic segmentation (paper 002): Mask R-CNN with in-place
    ABN and a Mini-DeepLab semantic head, fused after the network."""

    name = NAME
    output_keys = OUTPUT_KEYS
    architecture_defaults = ARCHITECTURE_DEFAULTS
    postprocess_defaults = POSTPROCESS_DEFAULTS

    def default_stuff_area_limit(self, info) -> int:
        return STUFF_AREA_LIMIT if info.name in PAPER_DATASETS else info.stuff_area_limit

    def resolve_architecture(self, arch: Dict, config: ModelConfig) -> Dict:
        info = config.dataset
        for key, default in zip(_DERIVED, DATASET_DEFAULTS.get(info.name, _DEFAULT)):
            if arch[key] is None:
                arch[key] = default
        arch = resolve_mask_rcnn_options(arch, config, NAME)

        def check(condition, key, rule):
            check_option(condition, NAME, key, rule, arch[key])

        check_options(arch, NAME,
                      positive_ints=("semantic_channels", "semantic_dilation_rate",
                                     "semantic_pool_size", "box_sampling_ratio"),
                      non_negative=("instance_loss_weight", "semantic_loss_weight"))
        check(isinstance(arch["fpn_extra_levels"], int) and arch["fpn_extra_levels"] >= 1,
              "fpn_extra_levels", "an integer >= 1 (P6 and up)")
        for key in ("anchor_sizes", "anchor_ratios"):
            check(_positive_numbers(arch[key]), key, "a non-empty list of positive numbers")
            arch[key] = [float(v) for v in arch[key]]
        check(len(arch["anchor_sizes"]) == 4 + arch["fpn_extra_levels"], "anchor_sizes",
              f"one size per FPN level (P2..P{5 + arch['fpn_extra_levels']})")
        check(isinstance(arch["semantic_top_fraction"], (int, float))
              and 0 < arch["semantic_top_fraction"] <= 1, "semantic_top_fraction",
              "a number in (0, 1]")
        for key in ("neck_normalization", "head_normalization"):
            check(arch[key] in norms.NORMALIZATIONS, key, f"one of {norms.NORMALIZATIONS}")
        for key in ("activation", "backbone_activation"):
            check(arch[key] is None or isinstance(arch[key], str), key, "an activation name")
        return arch

    def build_backbone(self, arch: Mapping[str, Any], pretrained: bool):
        """The backbone with `backbone_activation` where it takes one."""
        arch = dict(arch)
        if arch["backbone_activation"] and backbones.takes_activation(arch["backbone"]):
            arch["backbone_kwargs"] = dict(arch["backbone_kwargs"])
            arch["backbone_kwargs"].setdefault("activation", arch["backbone_activation"])
        return PanopticFPNArchitecture.build_backbone(arch, pretrained)

    def build(self, config: ModelConfig, pretrained: bool = True) -> keras.Model:
        arch = config.architecture
        info = config.dataset
        anchors = anchor_set(arch)
        return Seamless(
            self.build_backbone(arch, pretrained), len(info.thing_ids),
            len(semantic_classes.channel_classes(info, other_class=False)),
            semantic_channels=arch["semantic_channels"],
            semantic_dilation_rate=arch["semantic_dilation_rate"],
            semantic_pool_size=arch["semantic_pool_size"],
            neck_normalization=arch["neck_normalization"],
            head_normalization=arch["head_normalization"], activation=arch["activation"],
            fpn_extra_levels=arch["fpn_extra_levels"], anchor_sizes=anchors.sizes,
            anchor_ratios=anchors.ratios, box_sampling_ratio=arch["box_sampling_ratio"],
            bn_momentum=arch["bn_momentum"], bn_epsilon=arch["bn_epsilon"],
            **self.mask_rcnn_kwargs(config), name=f"{NAME}_{arch['backbone']}")

    def training_targets(self, config: ModelConfig) -> PanopticFPNTargets:
        return PanopticFPNTargets(config.dataset, semantic_other_class=False,
                                  max_instances=config.architecture["max_instances"])

    def training_loss(self, config: ModelConfig) -> SeamlessLoss:
        arch = config.architecture
        return SeamlessLoss(instance_weight=arch["instance_loss_weight"],
                            semantic_weight=arch["semantic_loss_weight"],
                            box_regression_beta=arch["box_regression_beta"],
                            anchor_set=anchor_set(arch),
                            top_fraction=arch["semantic_top_fraction"])

    def postprocess(self, outputs: Dict[str, tf.Tensor], config: ModelConfig,
                    options: Mapping[str, Any]) -> Dict[str, tf.Tensor]:
        return panoptic_fpn_predictions(outputs, config.dataset, semantic_other_class=False,
                                        **options)
