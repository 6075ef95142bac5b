"""Training batches and one loss-and-gradient pass of a top-down model, shared by
the tests of the families built on Panoptic FPN's Mask R-CNN (UPSNet, Seamless)."""
import tensorflow as tf

from deeplab2 import common


def training_batch(family, config, scenes):
    """A batch of (image, panoptic label) `scenes` with the family's training
    targets and per-example sample seeds [0, index]."""
    targets = family.training_targets(config)
    examples = []
    for index, (image, panoptic) in enumerate(scenes):
        example = {common.IMAGE: tf.constant(image, tf.float32),
                   common.PANOPTIC_LABEL: tf.constant(panoptic)}
        example.update(targets(example[common.PANOPTIC_LABEL]))
        example[common.SAMPLE_SEED] = tf.constant([0, index], tf.int32)
        examples.append(example)
    return {key: tf.stack([e[key] for e in examples]) for key in examples[0]}


def losses_and_gradients(family, model, batch):
    """(training outputs, per-image losses, {variable path: gradient of the
    mean total loss})."""
    loss_fn = family.training_loss(model.model_config)
    with tf.GradientTape() as tape:
        outputs = family.training_outputs(model, batch)
        losses = loss_fn(batch, outputs)
        total = tf.reduce_mean(losses["total_loss"])
    return outputs, losses, dict(zip([v.path for v in model.trainable_variables],
                                     tape.gradient(total, model.trainable_variables)))
