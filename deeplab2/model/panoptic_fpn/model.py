"""Panoptic FPN (paper 003): Mask R-CNN with FPN plus a semantic branch on the pyramid.

The model takes float images [B, H, W, 3] in [0, 255], H and W multiples of
32 (normalized inside to (x - pixel_mean) / pixel_std), and runs
backbone -> FPN P2..P6 -> RPN and semantic branch (SemanticFPN, logits at input
resolution). Then (SPEC_TOP_DOWN.md sections 1 and 2):

- inference (`training` False): proposals (per level top `rpn_pre_nms_top_k_test`,
  NMS, `rpn_post_nms_top_k` kept) -> box head -> detections (score, per-class
  NMS, top `max_detections`) -> mask head on the detected boxes. Returns
  SEMANTIC_LOGITS, DETECTION_BOXES / SCORES / CLASSES / VALID and
  MASK_PROBABILITIES (sigmoid of the detected class's 28 x 28 logits, 0 in
  padding rows), all float32 or int32.
- training (`training` True, `targets` given): proposals (top
  `rpn_pre_nms_top_k_train` per level), RoIs sampled with the GT boxes appended,
  box head on them, mask head on the foreground slots. Returns the raw outputs
  and the sampled targets the loss needs (keys below), float32 except the
  RoI targets' int32 / bool fields.

H and W may be unknown when tracing (an exported model serves any image
size): the anchors are then computed in the graph and each level's top-k
keeps a static k, padded with invalid rows for a level with fewer anchors
(`top_down.detections`), so for a given size the outputs are those of a
model traced with that size.

`targets` holds the batched `instance_targets` fields, the panoptic label and
SAMPLE_SEED (`targets.MODEL_TARGET_KEYS`); the RoIs are sampled with a seed
derived from it (`targets.sampling_seeds`), so a step is reproducible.
"""
import keras
import numpy as np
import tensorflow as tf
from keras import ops

from deeplab2 import common
from deeplab2.model.panoptic_fpn import batched
from deeplab2.model.panoptic_fpn.targets import sampling_seeds
from deeplab2.model.top_down import instance_targets as gt
from deeplab2.model.top_down import normalization as norms
from deeplab2.model.top_down import roi_targets, sampling
from deeplab2.model.top_down.anchors import STANDARD_ANCHORS, AnchorSet
from deeplab2.model.top_down.box_head import BoxHead
from deeplab2.model.top_down.fpn import FPN
from deeplab2.model.top_down.losses import concat_levels
from deeplab2.model.top_down.mask_head import MaskHead
from deeplab2.model.top_down.roi_align import multilevel_roi_align
from deeplab2.model.top_down.rpn_head import RPNHead
from deeplab2.model.top_down.semantic_fpn import SemanticFPN

# Inputs must be multiples of this (the coarsest FPN level P5 that the
# semantic branch upsamples back to P2).
SIZE_DIVISOR = 32
BOX_POOL_SIZE = 7
MASK_POOL_SIZE = 14
# Foreground share of the sampled RoIs [std].
ROI_POSITIVE_FRACTION = 0.25

OUTPUT_KEYS = (common.SEMANTIC_LOGITS, common.DETECTION_BOXES, common.DETECTION_SCORES,
               common.DETECTION_CLASSES, common.DETECTION_VALID, common.MASK_PROBABILITIES)

# Training outputs, read by the loss.
RPN_LOGITS = "rpn_logits"  # [B, A] objectness of every anchor (fpn_anchors order)
RPN_DELTAS = "rpn_deltas"  # [B, A, 4]
BOX_CLASS_LOGITS = "box_class_logits"  # [B, S, K + 1] of the sampled RoIs
BOX_DELTAS = "box_deltas"  # [B, S, 4K]
ROI_CLASSES = "roi_classes"  # int32 [B, S] target class
ROI_BOX_TARGETS = "roi_box_targets"  # [B, S, 4]
ROI_VALID = "roi_valid"  # bool [B, S]
ROI_FOREGROUND = "roi_foreground"  # bool [B, S]
MASK_LOGITS = "mask_logits"  # [B, F, 28, 28, K] of the foreground slots
MASK_TARGETS = "mask_targets"  # [B, F, 28, 28] 0/1
MASK_CLASSES = "mask_classes"  # int32 [B, F]
MASK_FOREGROUND = "mask_foreground"  # bool [B, F]


def _rgb(value):
    values = (value,) * 3 if np.ndim(value) == 0 else tuple(value)
    return tuple(float(v) for v in values)


def _coarse(size, level):
    """Feature size at stride 2**level of an input side (None if unknown)."""
    return None if size is None else -(-size // 2 ** level)


def _image_size(images):
    """(height, width): ints when static (ValueError unless multiples of
    SIZE_DIVISOR), scalar tensors when unknown at tracing (the caller pads to
    multiples, as `PanopticFPNArchitecture.padded_size`)."""
    height, width = (images.shape[i] if images.shape[i] is not None
                     else tf.shape(images)[i] for i in (1, 2))
    if any(isinstance(side, int) and side % SIZE_DIVISOR for side in (height, width)):
        raise ValueError(f"Panoptic FPN takes images whose height and width are "
                         f"multiples of {SIZE_DIVISOR}; got shape {tuple(images.shape)}.")
    return height, width


@keras.saving.register_keras_serializable(package="deeplab2")
class PanopticFPN(keras.Model):
    """Panoptic FPN (see the module docstring).

    Args:
        backbone: a `backbones.Backbone` (res2..res5 at strides 4..32), with
            its frozen layers already marked (`freezing.freeze_backbone`).
        num_thing_classes: K, detection classes besides background.
        num_semantic_classes: channels of the semantic logits.
        fpn_channels: FPN and RPN width (256).
        semantic_channels, semantic_groups: semantic branch width and GroupNorm groups.
        box_fc_channels: box head fc width (1024).
        mask_channels: mask head width (256).
        rpn_pre_nms_top_k_train, rpn_pre_nms_top_k_test: anchors per level
            before NMS (2000 / 1000).
        rpn_post_nms_top_k: proposals per image (1000).
        rpn_nms_threshold: proposal NMS IoU (0.7).
        roi_samples: RoIs sampled per training image (512, 25% foreground at most).
        detection_score_threshold, detection_nms, max_detections: inference
            detections (0.05, 0.5, 100).
        pixel_mean, pixel_std: input normalization, scalars or (R, G, B).
        fpn_global_context: add C5's projected global average to the P5
            lateral (`fpn.FPN`; UPSNet on COCO).
        semantic_head: the semantic head layer, reading the pyramid dict;
            None builds the semantic FPN branch (`semantic_channels`,
            `semantic_groups`). A family with another head (UPSNet) passes it
            and overrides `_semantic_outputs`.
        background_outputs: box deltas and masks also for the background
            class, never read (Detectron1's layout, `BoxHead`; UPSNet).
        neck_normalization: after the FPN and RPN convs
            (`top_down.normalization`; Seamless "batch_norm"). The FPN is
            activated only when normalized (Seamless's in-place ABN).
        head_normalization: in the box and mask heads (Seamless "group_norm").
        activation: of the RPN, the heads and a normalized FPN ("relu";
            Seamless "leaky_relu").
        fpn_extra_levels: stride-2 conv levels above P5 (`fpn.FPN`); 0 for P6
            subsampled from P5.
        anchor_sizes, anchor_ratios: the `anchors.AnchorSet`, one size per
            FPN output level.
        box_sampling_ratio: RoIAlign samples per bin and axis of the box head
            (2; Seamless 4, the same as pooling 14 x 14 at 2 and averaging 2 x 2).
        bn_momentum, bn_epsilon: of the batch norm `neck_normalization` adds.
    """

    def __init__(self, backbone, num_thing_classes, num_semantic_classes, *,
                 fpn_channels=256, semantic_channels=128, semantic_groups=32,
                 box_fc_channels=1024, mask_channels=256, rpn_pre_nms_top_k_train=2000,
                 rpn_pre_nms_top_k_test=1000, rpn_post_nms_top_k=1000,
                 rpn_nms_threshold=0.7, roi_samples=512, detection_score_threshold=0.05,
                 detection_nms=0.5, max_detections=100, pixel_mean=127.5, pixel_std=127.5,
                 fpn_global_context=False, semantic_head=None, background_outputs=False,
                 neck_normalization=None, head_normalization=None, activation="relu",
                 fpn_extra_levels=0, anchor_sizes=STANDARD_ANCHORS.sizes,
                 anchor_ratios=STANDARD_ANCHORS.ratios, box_sampling_ratio=2,
                 bn_momentum=norms.BN_MOMENTUM, bn_epsilon=norms.EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.num_thing_classes = num_thing_classes
        self.num_semantic_classes = num_semantic_classes
        self.fpn_channels = fpn_channels
        self.semantic_channels = semantic_channels
        self.semantic_groups = semantic_groups
        self.box_fc_channels = box_fc_channels
        self.mask_channels = mask_channels
        self.rpn_pre_nms_top_k_train = rpn_pre_nms_top_k_train
        self.rpn_pre_nms_top_k_test = rpn_pre_nms_top_k_test
        self.rpn_post_nms_top_k = rpn_post_nms_top_k
        self.rpn_nms_threshold = rpn_nms_threshold
        self.roi_samples = roi_samples
        self.detection_score_threshold = detection_score_threshold
        self.detection_nms = detection_nms
        self.max_detections = max_detections
        self.pixel_mean = _rgb(pixel_mean)
        self.pixel_std = _rgb(pixel_std)
        # x / std - mean / std, as Panoptic-DeepLab normalizes.
        self._scale = np.array(self.pixel_std, np.float32)
        self._shift = (np.array(self.pixel_mean, np.float64)
                       / np.array(self.pixel_std, np.float64)).astype(np.float32)
        self.roi_sample_rule = sampling.SampleRule(roi_samples, ROI_POSITIVE_FRACTION)

        self.fpn_global_context = fpn_global_context
        self.neck_normalization = neck_normalization
        self.head_normalization = head_normalization
        self.activation = activation
        self.fpn_extra_levels = fpn_extra_levels
        self.anchor_set = AnchorSet(anchor_sizes, anchor_ratios)
        self.box_sampling_ratio = box_sampling_ratio
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        bn_options = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon)
        self.fpn = FPN(fpn_channels, global_context=fpn_global_context,
                       normalization=neck_normalization,
                       activation=activation if neck_normalization else None,
                       extra_levels=fpn_extra_levels, name="fpn", **bn_options)
        if len(self.fpn.output_levels()) != len(self.anchor_set.sizes):
            raise ValueError(f"{len(self.anchor_set.sizes)} anchor sizes for the "
                             f"{len(self.fpn.output_levels())} FPN levels "
                             f"(fpn_extra_levels {fpn_extra_levels}): one size per level.")
        self.rpn_head = RPNHead(self.anchor_set.num_ratios, fpn_channels,
                                normalization=neck_normalization, activation=activation,
                                name="rpn_head", **bn_options)
        self.semantic_head = (semantic_head if semantic_head is not None else SemanticFPN(
            num_semantic_classes, semantic_channels, semantic_groups, name="semantic_head"))
        self.background_outputs = background_outputs
        head_options = dict(background_outputs=background_outputs,
                            normalization=head_normalization, activation=activation)
        self.box_head = BoxHead(num_thing_classes, box_fc_channels, name="box_head",
                                **head_options)
        self.mask_head = MaskHead(num_thing_classes, mask_channels, name="mask_head",
                                  **head_options)

    def build(self, input_shape):
        batch, height, width = tuple(input_shape)[:3]
        if not self.backbone.built:
            self.backbone.build(tuple(input_shape))
        features = {f"res{level}": (batch, _coarse(height, level), _coarse(width, level),
                                    self.backbone.feature_channels[f"res{level}"])
                    for level in (2, 3, 4, 5)}
        self.fpn.build(features)
        pyramid = self.fpn.compute_output_shape(features)
        self.rpn_head.build(pyramid)
        self.semantic_head.build(pyramid)
        self.box_head.build((None, BOX_POOL_SIZE, BOX_POOL_SIZE, self.fpn_channels))
        self.mask_head.build((None, MASK_POOL_SIZE, MASK_POOL_SIZE, self.fpn_channels))

    def call(self, inputs, training=None, targets=None):
        if training and targets is None:
            raise ValueError("Panoptic FPN trains on its ground truth: call it with "
                             "training=True and targets=... (MODEL_TARGET_KEYS).")
        height, width = _image_size(inputs)
        images = ops.cast(inputs, "float32") / self._scale - self._shift
        pyramid = self.fpn(self.backbone(images, training=training))
        rpn = self.rpn_head(pyramid)
        semantic = self._semantic_outputs(pyramid)
        anchors = self.anchor_set.level_anchors(height, width)
        proposals = batched.batch_proposals(
            rpn["logits"], rpn["deltas"], anchors, (height, width),
            pre_nms_top_k=(self.rpn_pre_nms_top_k_train if training
                           else self.rpn_pre_nms_top_k_test),
            post_nms_top_k=self.rpn_post_nms_top_k, iou_threshold=self.rpn_nms_threshold)
        levels = {level: pyramid[f"p{level}"] for level in (2, 3, 4, 5)}
        outputs = {common.SEMANTIC_LOGITS: semantic[common.SEMANTIC_LOGITS]}
        if training:
            outputs.update(self._training_heads(levels, rpn, proposals, targets, semantic))
        else:
            outputs.update(self._inference_heads(levels, proposals, (height, width), semantic))
        return outputs

    def _semantic_outputs(self, pyramid):
        """{SEMANTIC_LOGITS: float32 logits at input resolution}, plus what a
        subclass's heads read."""
        return {common.SEMANTIC_LOGITS: ops.cast(self.semantic_head(pyramid), "float32")}

    def _box_head_on(self, levels, boxes):
        """Box head outputs ([B, N, K + 1], [B, N, 4K]) of boxes [B, N, 4]."""
        pooled = multilevel_roi_align(levels, boxes, BOX_POOL_SIZE,
                                      sampling_ratio=self.box_sampling_ratio)
        head = self.box_head(self._flatten_rois(pooled))
        return (self._per_image(head["class_logits"], boxes),
                self._per_image(head["box_deltas"], boxes))

    def _mask_head_on(self, levels, boxes):
        """Mask logits [B, N, 28, 28, K] of boxes [B, N, 4]."""
        pooled = multilevel_roi_align(levels, boxes, MASK_POOL_SIZE)
        return self._per_image(self.mask_head(self._flatten_rois(pooled)), boxes)

    @staticmethod
    def _flatten_rois(pooled):
        """[B, N, P, P, C] -> [B * N, P, P, C]."""
        return tf.reshape(pooled, tf.concat([[-1], tf.shape(pooled)[2:]], 0))

    @staticmethod
    def _per_image(values, boxes):
        """float32 [B * N, ...] -> [B, N, ...], B and N those of boxes [B, N, 4]."""
        shape = tf.concat([tf.shape(boxes)[:2], tf.shape(values)[1:]], 0)
        return tf.cast(tf.reshape(values, shape), tf.float32)

    def _inference_heads(self, levels, proposals, image_size, semantic):
        return self._detect(levels, proposals, image_size)[0]

    def _detect(self, levels, proposals, image_size):
        """The detection outputs and the detected class's mask logits [B, D, 28, 28]."""
        class_logits, box_deltas = self._box_head_on(levels, proposals.boxes)
        detections = batched.batch_detections(
            tf.nn.softmax(class_logits), box_deltas, proposals.boxes, proposals.valid,
            image_size, score_threshold=self.detection_score_threshold,
            iou_threshold=self.detection_nms, max_detections=self.max_detections)
        mask_logits = self._mask_head_on(levels, detections.boxes)
        class_masks = tf.gather(mask_logits, tf.maximum(detections.classes - 1, 0), axis=4,
                                batch_dims=2)
        valid = detections.valid
        return {
            common.DETECTION_BOXES: detections.boxes,
            common.DETECTION_SCORES: detections.scores,
            common.DETECTION_CLASSES: detections.classes,
            common.DETECTION_VALID: tf.cast(valid, tf.int32),
            common.MASK_PROBABILITIES: tf.where(valid[:, :, None, None],
                                                tf.sigmoid(class_masks), 0.0),
        }, class_masks

    def _training_heads(self, levels, rpn, proposals, targets, semantic):
        rois = roi_targets.sample_rois(
            proposals.boxes, proposals.valid, targets[gt.GT_BOXES], targets[gt.GT_CLASSES],
            targets[gt.GT_PANOPTIC_IDS], targets[gt.GT_VALID],
            sampling_seeds(targets[common.SAMPLE_SEED]).roi, sample_rule=self.roi_sample_rule)
        class_logits, box_deltas = self._box_head_on(levels, rois.boxes)
        foreground = roi_targets.foreground_slots(rois, self.roi_sample_rule)
        return {
            RPN_LOGITS: tf.cast(concat_levels(rpn["logits"]), tf.float32),
            RPN_DELTAS: tf.cast(concat_levels(rpn["deltas"]), tf.float32),
            BOX_CLASS_LOGITS: class_logits,
            BOX_DELTAS: box_deltas,
            ROI_CLASSES: rois.classes,
            ROI_BOX_TARGETS: rois.box_targets,
            ROI_VALID: rois.valid,
            ROI_FOREGROUND: rois.foreground,
            MASK_LOGITS: self._mask_head_on(levels, foreground.boxes),
            MASK_TARGETS: roi_targets.mask_targets(targets[common.PANOPTIC_LABEL],
                                                   foreground.boxes,
                                                   foreground.gt_panoptic_ids),
            MASK_CLASSES: foreground.classes,
            MASK_FOREGROUND: foreground.foreground,
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            backbone=keras.saving.serialize_keras_object(self.backbone),
            num_thing_classes=self.num_thing_classes,
            num_semantic_classes=self.num_semantic_classes,
            fpn_channels=self.fpn_channels, semantic_channels=self.semantic_channels,
            semantic_groups=self.semantic_groups, box_fc_channels=self.box_fc_channels,
            mask_channels=self.mask_channels,
            rpn_pre_nms_top_k_train=self.rpn_pre_nms_top_k_train,
            rpn_pre_nms_top_k_test=self.rpn_pre_nms_top_k_test,
            rpn_post_nms_top_k=self.rpn_post_nms_top_k,
            rpn_nms_threshold=self.rpn_nms_threshold, roi_samples=self.roi_samples,
            detection_score_threshold=self.detection_score_threshold,
            detection_nms=self.detection_nms, max_detections=self.max_detections,
            pixel_mean=self.pixel_mean, pixel_std=self.pixel_std,
            fpn_global_context=self.fpn_global_context,
            background_outputs=self.background_outputs,
            neck_normalization=self.neck_normalization,
            head_normalization=self.head_normalization, activation=self.activation,
            fpn_extra_levels=self.fpn_extra_levels, anchor_sizes=self.anchor_set.sizes,
            anchor_ratios=self.anchor_set.ratios, box_sampling_ratio=self.box_sampling_ratio,
            bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
