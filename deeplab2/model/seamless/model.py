"""Seamless Scene Segmentation (paper 002): Panoptic FPN's Mask R-CNN with
in-place activated batch norm, GroupNorm region heads and a Mini-DeepLab
semantic head (SPEC_TOP_DOWN.md section 4).

The network is `PanopticFPN`'s (backbone, FPN, RPN, box and mask heads, the
same proposals, RoI sampling, detections and outputs) with:
- batch norm + LeakyReLU(0.01) after every FPN and RPN conv (in-place ABN;
  the backbone's own activation is set by the family, `family.py`);
- the extra FPN levels as stride-2 convs from C5 (`fpn.FPN`), the anchors
  of the dataset (`anchors.AnchorSet`);
- GroupNorm + LeakyReLU in the box and mask heads; the box head pools like
  the mask head, 14 x 14 with 2 samples per bin, then averages 2 x 2, which
  is RoIAlign 7 x 7 with 4 samples per bin (`box_sampling_ratio` 4);
- `SeamlessSemanticHead` (a MiniDL per level) instead of the semantic FPN
  branch, predicting every class, things included.
"""
import keras

from deeplab2.model.panoptic_fpn.model import PanopticFPN
from deeplab2.model.seamless.semantic_head import (DILATION_RATE, POOL_SIZE,
                                                   SeamlessSemanticHead)
from deeplab2.model.top_down import normalization as norms

SEAMLESS_OPTIONS = dict(neck_normalization="batch_norm", head_normalization="group_norm",
                        activation="leaky_relu", box_sampling_ratio=4)


@keras.saving.register_keras_serializable(package="deeplab2")
class Seamless(PanopticFPN):
    """Seamless Scene Segmentation (see the module docstring).

    Args:
        backbone, num_thing_classes, num_semantic_classes: as `PanopticFPN`;
            the semantic classes are all the dataset's but void.
        semantic_channels, semantic_dilation_rate, semantic_pool_size: of
            each MiniDL (128, 6, 64).
        **kwargs: `PanopticFPN`'s other options (its `bn_momentum` and
            `bn_epsilon` also apply to the semantic head); the
            normalizations, activation and box sampling default to
            Seamless's (`SEAMLESS_OPTIONS`).
    """

    def __init__(self, backbone, num_thing_classes, num_semantic_classes, *,
                 semantic_channels=128, semantic_dilation_rate=DILATION_RATE,
                 semantic_pool_size=POOL_SIZE, **kwargs):
        kwargs = dict(SEAMLESS_OPTIONS, **kwargs)
        head = SeamlessSemanticHead(
            num_semantic_classes, semantic_channels, semantic_dilation_rate, semantic_pool_size,
            normalization=kwargs["neck_normalization"], activation=kwargs["activation"],
            bn_momentum=kwargs.get("bn_momentum", norms.BN_MOMENTUM),
            bn_epsilon=kwargs.get("bn_epsilon", norms.EPSILON), name="semantic_head")
        super().__init__(backbone, num_thing_classes, num_semantic_classes,
                         semantic_channels=semantic_channels, semantic_head=head, **kwargs)
        self.semantic_dilation_rate = semantic_dilation_rate
        self.semantic_pool_size = semantic_pool_size

    def get_config(self):
        config = super().get_config()
        config.pop("semantic_groups")
        config.update(semantic_dilation_rate=self.semantic_dilation_rate,
                      semantic_pool_size=self.semantic_pool_size)
        return config
