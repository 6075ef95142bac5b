"""UPSNet (paper 001): Panoptic FPN's Mask R-CNN with a deformable-convolution
semantic head and a parameter-free panoptic head (SPEC_TOP_DOWN.md section 3).

The network is `PanopticFPN`'s (backbone, FPN, RPN, box and mask heads, the
same proposals, RoI sampling and detections) with:
- `UPSNetSemanticHead` instead of the semantic FPN branch: logits X of every
  class at stride 4, SEMANTIC_LOGITS = X upsampled x4 (half-pixel bilinear);
- optionally (COCO) the global context of C5 added to the P5 lateral;
- in training, the panoptic logits Z on the stride-4 canvas
  (`panoptic_head.panoptic_logits`): the ground-truth boxes and classes, the
  mask head's logits on those boxes, and a random 70% of the instances kept
  (`panoptic_head.keep_random_instances`, seeded from the step's seed);
- at inference, DETECTION_MASK_LOGITS, the 28 x 28 logits of each detection's
  class (the panoptic head reads logits, MASK_PROBABILITIES their sigmoid).
Panoptic fusion itself (pruning, Z's argmax, class re-assignment) is the
post-processing (`upsnet.postprocess`).
"""
import keras
import tensorflow as tf
from keras import ops

from deeplab2 import common
from deeplab2.model.panoptic_fpn import model as panoptic_fpn_model
from deeplab2.model.panoptic_fpn.model import PanopticFPN
from deeplab2.model.panoptic_fpn.targets import sampling_seeds
from deeplab2.model.top_down import instance_targets as gt
from deeplab2.model.top_down import sampling
from deeplab2.model.top_down.semantic_fpn import upsample
from deeplab2.model.upsnet import panoptic_head
from deeplab2.model.upsnet.semantic_head import OUTPUT_STRIDE, UPSNetSemanticHead

DETECTION_MASK_LOGITS = "detection_mask_logits"  # [B, D, 28, 28], 0 in padding rows
OUTPUT_KEYS = panoptic_fpn_model.OUTPUT_KEYS + (DETECTION_MASK_LOGITS,)

# Training outputs, besides Panoptic FPN's, read by the loss.
SEMANTIC_LOGITS_STRIDE4 = "semantic_logits_stride4"  # X [B, H / 4, W / 4, C]
PANOPTIC_LOGITS = "panoptic_logits"  # Z [B, H / 4, W / 4, S + 1 + M]
PANOPTIC_KEPT = "panoptic_kept"  # bool [B, M]: GT instances with a slot in Z


@keras.saving.register_keras_serializable(package="deeplab2")
class UPSNet(PanopticFPN):
    """UPSNet (see the module docstring).

    Args:
        backbone, num_thing_classes, num_semantic_classes: as `PanopticFPN`;
            the semantic classes are all the dataset's (stuff and things).
        stuff_channels: the semantic channels of the stuff classes.
        thing_channels: the semantic channel of detection class k + 1, per k.
        semantic_dcn_channels: widths of the shared DCN layers.
        global_context: add C5's global context to P5 (COCO).
        instance_keep_fraction: share of the GT instances kept in training Z.
        **kwargs: `PanopticFPN`'s other options (widths, proposal and
            detection numbers, normalization).
    """

    def __init__(self, backbone, num_thing_classes, num_semantic_classes, *,
                 stuff_channels, thing_channels, semantic_dcn_channels=(128, 128),
                 global_context=False, instance_keep_fraction=0.7, **kwargs):
        head = UPSNetSemanticHead(num_semantic_classes, semantic_dcn_channels,
                                  name="semantic_head")
        super().__init__(backbone, num_thing_classes, num_semantic_classes,
                         fpn_global_context=global_context, semantic_head=head, **kwargs)
        if len(thing_channels) != num_thing_classes:
            raise ValueError(f"thing_channels needs one channel per thing class "
                             f"({num_thing_classes}); got {list(thing_channels)}.")
        self.stuff_channels = tuple(int(c) for c in stuff_channels)
        self.thing_channels = tuple(int(c) for c in thing_channels)
        self.semantic_dcn_channels = tuple(semantic_dcn_channels)
        self.global_context = global_context
        self.instance_keep_fraction = instance_keep_fraction

    def _semantic_outputs(self, pyramid):
        stride4 = ops.cast(self.semantic_head(pyramid), "float32")
        return {common.SEMANTIC_LOGITS: upsample(stride4, OUTPUT_STRIDE),
                SEMANTIC_LOGITS_STRIDE4: stride4}

    def _inference_heads(self, levels, proposals, image_size, semantic):
        outputs, mask_logits = self._detect(levels, proposals, image_size)
        valid = outputs[common.DETECTION_VALID] > 0
        outputs[DETECTION_MASK_LOGITS] = tf.where(valid[:, :, None, None], mask_logits, 0.0)
        return outputs

    def _training_heads(self, levels, rpn, proposals, targets, semantic):
        outputs = super()._training_heads(levels, rpn, proposals, targets, semantic)
        boxes, classes = targets[gt.GT_BOXES], targets[gt.GT_CLASSES]
        mask_logits = self._ground_truth_mask_logits(levels, boxes, classes,
                                                     targets[gt.GT_VALID])
        seed = tf.random.experimental.stateless_fold_in(
            sampling_seeds(targets[common.SAMPLE_SEED]).roi, 1)
        kept = panoptic_head.keep_random_instances(targets[gt.GT_VALID], seed,
                                                   self.instance_keep_fraction)
        stride4 = semantic[SEMANTIC_LOGITS_STRIDE4]
        outputs[SEMANTIC_LOGITS_STRIDE4] = stride4
        outputs[PANOPTIC_LOGITS] = panoptic_head.panoptic_logits(
            stride4, tf.cast(boxes, tf.float32) / OUTPUT_STRIDE, classes, mask_logits, kept,
            stuff_channels=self.stuff_channels, thing_channels=self.thing_channels)
        outputs[PANOPTIC_KEPT] = kept
        return outputs

    def _ground_truth_mask_logits(self, levels, boxes, classes, valid):
        """[B, N, 28, 28] mask logits of each ground-truth slot's class. The
        mask head skips the padding rows after the batch's last valid one
        (`sampling.rows_in_use`; all N under XLA): they get 0, and Z ignores
        them. With COCO's 100 slots and a handful of instances per image,
        that is most of the head's work in training."""
        used = sampling.rows_in_use(valid)
        logits = tf.gather(self._mask_head_on(levels, boxes[:, :used]),
                           tf.maximum(classes[:, :used] - 1, 0), axis=4, batch_dims=2)
        return tf.pad(logits, [[0, 0], [0, tf.shape(boxes)[1] - used], [0, 0], [0, 0]])

    def get_config(self):
        config = super().get_config()
        for key in ("semantic_channels", "semantic_groups", "fpn_global_context"):
            config.pop(key)
        config.update(stuff_channels=self.stuff_channels, thing_channels=self.thing_channels,
                      semantic_dcn_channels=self.semantic_dcn_channels,
                      global_context=self.global_context,
                      instance_keep_fraction=self.instance_keep_fraction)
        return config
