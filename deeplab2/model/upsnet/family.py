"""UPSNet as a meta-architecture: options, model, targets, loss, post-processing.

The Mask R-CNN options, input sizes (multiples of 32, output_stride 32) and
training inputs are Panoptic FPN's (`panoptic_fpn.family`); the rest follows
SPEC_TOP_DOWN.md section 3. Decisions:
- `semantic_dcn_channels` None derives from the dataset: COCO (256, 128,
  128), three DCN layers as the authors' code; otherwise (128, 128), paper
  001 section 4.2's Cityscapes head. `global_context` None: True on COCO only.
- Loss weights None derive from the dataset (paper 001 section 4): COCO
  lambda_sem 0.2, lambda_pan 0.1; Cityscapes 1.0 and 0.5; any other dataset
  Cityscapes' [ours].
- `background_outputs` True: box deltas and masks also exist for the
  background class (Detectron1's layout, never read), as the paper's 46.1M
  parameters count them.
- The semantic head predicts every dataset class but void, things included
  (`semantic_classes` without 'other'): its thing channels feed the
  panoptic head.
- Post-processing defaults: score 0.6, class-agnostic NMS 0.5, canvas overlap
  0.3 (section 3.2), the dataset's stuff area limit.
"""
from typing import Any, Dict, Mapping

import keras
import tensorflow as tf

from deeplab2.model.meta import ModelConfig
from deeplab2.model.panoptic_fpn import semantic_classes
from deeplab2.model.panoptic_fpn.family import (MASK_RCNN_DEFAULTS, PanopticFPNArchitecture,
                                                check_option, check_options,
                                                resolve_mask_rcnn_options)
from deeplab2.model.panoptic_fpn.targets import PanopticFPNTargets
from deeplab2.model.upsnet.loss import UPSNetLoss
from deeplab2.model.upsnet.model import OUTPUT_KEYS, UPSNet
from deeplab2.model.upsnet.postprocess import upsnet_predictions

NAME = "upsnet"
ARCHITECTURE_DEFAULTS = dict(
    MASK_RCNN_DEFAULTS,
    semantic_dcn_channels=None,
    global_context=None,
    instance_keep_fraction=0.7,
    background_outputs=True,
    semantic_loss_weight=None,
    panoptic_loss_weight=None,
)
POSTPROCESS_DEFAULTS = dict(score_threshold=0.6, nms_threshold=0.5, overlap_threshold=0.3,
                            stuff_area_limit=None)
# By dataset name: (semantic_dcn_channels, global_context,
# semantic_loss_weight, panoptic_loss_weight); other datasets take Cityscapes'.
DATASET_DEFAULTS = {
    "coco": ((256, 128, 128), True, 0.2, 0.1),
    "cityscapes": ((128, 128), False, 1.0, 0.5),
}
_DERIVED = ("semantic_dcn_channels", "global_context", "semantic_loss_weight",
            "panoptic_loss_weight")


class UPSNetArchitecture(PanopticFPNArchitecture):
    """Top-down panoptic segmentation (paper 001): Mask R-CNN and a deformable
    semantic head, fused by a parameter-free panoptic head."""

    name = NAME
    output_keys = OUTPUT_KEYS
    architecture_defaults = ARCHITECTURE_DEFAULTS
    postprocess_defaults = POSTPROCESS_DEFAULTS

    def resolve_architecture(self, arch: Dict, config: ModelConfig) -> Dict:
        info = config.dataset
        if not info.stuff_ids:
            raise ValueError(f"dataset {info.name!r} has no stuff classes: {NAME}'s panoptic "
                             "head needs some.")
        arch = resolve_mask_rcnn_options(arch, config, NAME)
        defaults = DATASET_DEFAULTS.get(info.name, DATASET_DEFAULTS["cityscapes"])
        for key, default in zip(_DERIVED, defaults):
            if arch[key] is None:
                arch[key] = default
        channels = arch["semantic_dcn_channels"]
        check_option(isinstance(channels, (list, tuple)) and len(channels) > 0
                     and all(isinstance(c, int) and not isinstance(c, bool) and c > 0
                             for c in channels),
                     NAME, "semantic_dcn_channels", "a non-empty list of positive integers",
                     channels)
        arch["semantic_dcn_channels"] = list(channels)
        check_options(arch, NAME, fractions=("instance_keep_fraction",),
                      bools=("global_context", "background_outputs"),
                      non_negative=("semantic_loss_weight", "panoptic_loss_weight"))
        return arch

    def build(self, config: ModelConfig, pretrained: bool = True) -> keras.Model:
        arch = config.architecture
        info = config.dataset
        channels = semantic_classes.channel_classes(info, other_class=False)
        return UPSNet(
            self.build_backbone(arch, pretrained), len(info.thing_ids), len(channels),
            stuff_channels=[channels.index(c) for c in info.stuff_ids],
            thing_channels=[channels.index(c) for c in info.thing_ids],
            semantic_dcn_channels=arch["semantic_dcn_channels"],
            global_context=arch["global_context"],
            instance_keep_fraction=arch["instance_keep_fraction"],
            background_outputs=arch["background_outputs"],
            **self.mask_rcnn_kwargs(config), name=f"{NAME}_{arch['backbone']}")

    def training_targets(self, config: ModelConfig) -> PanopticFPNTargets:
        return PanopticFPNTargets(config.dataset, semantic_other_class=False,
                                  max_instances=config.architecture["max_instances"])

    def training_loss(self, config: ModelConfig) -> UPSNetLoss:
        arch = config.architecture
        info = config.dataset
        return UPSNetLoss(semantic_weight=arch["semantic_loss_weight"],
                          panoptic_weight=arch["panoptic_loss_weight"],
                          stuff_class_ids=info.stuff_ids, thing_class_ids=info.thing_ids,
                          label_divisor=info.label_divisor,
                          box_regression_beta=arch["box_regression_beta"])

    def postprocess(self, outputs: Dict[str, tf.Tensor], config: ModelConfig,
                    options: Mapping[str, Any]) -> Dict[str, tf.Tensor]:
        return upsnet_predictions(outputs, config.dataset, **options)
