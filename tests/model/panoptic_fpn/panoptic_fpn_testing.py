"""Small Panoptic FPN models and synthetic training batches for the tests of this folder."""
import keras
import numpy as np
import tensorflow as tf

import strided_conv_backbone
from deeplab2 import common
from deeplab2.data.synthetic import generate_scene
from deeplab2.model import build_model, get_meta_architecture

SIZE = (64, 96)
# Narrow widths and few proposals, RoIs and detections: seconds per step.
SMALL = dict(fpn_channels=16, semantic_channels=8, semantic_groups=4, box_fc_channels=32,
             mask_channels=8, rpn_pre_nms_top_k_train=200, rpn_pre_nms_top_k_test=100,
             rpn_post_nms_top_k=100, roi_samples=64, max_detections=20, max_instances=16)
FAMILY = get_meta_architecture("panoptic_fpn")


def small_model(dataset="synthetic", seed=0, **options):
    """A Panoptic FPN on the four-layer test backbone, built with its variables."""
    keras.utils.set_random_seed(seed)
    return build_model("panoptic_fpn", dataset, crop_size=SIZE,
                       backbone=strided_conv_backbone.register(), **dict(SMALL, **options))


def synthetic_batch(config, num_images=2, seed=0):
    """Synthetic scenes of SIZE with the family's targets and per-example sample seeds."""
    targets = FAMILY.training_targets(config)
    examples = []
    for index in range(num_images):
        scene = generate_scene(seed, "train", index, *SIZE)
        example = {common.IMAGE: tf.constant(scene.image, tf.float32),
                   common.PANOPTIC_LABEL: tf.constant(scene.panoptic)}
        example.update(targets(example[common.PANOPTIC_LABEL]))
        example[common.SAMPLE_SEED] = tf.constant([seed, index], tf.int32)
        examples.append(example)
    return {key: tf.stack([e[key] for e in examples]) for key in examples[0]}


def losses_and_gradients(model, batch):
    """Per-image losses of a training forward pass and the gradients of their
    mean with respect to the model's trainable variables."""
    loss_fn = FAMILY.training_loss(model.model_config)
    with tf.GradientTape() as tape:
        losses = loss_fn(batch, FAMILY.training_outputs(model, batch))
        total = tf.reduce_mean(losses["total_loss"])
    return losses, tape.gradient(total, model.trainable_variables)


def as_numpy(values):
    return {key: np.asarray(value) for key, value in values.items()}
