"""A toy model family for tests whose subject is not a model: the trainer's
mechanics (checkpoints, resume, distribution, precision) and the
meta-architecture contract. A 1x1 convolution of the image traces and
compiles in a second where a real family takes minutes.

Importing the module registers the family as "toy_semantic" (once per
process); Gin configs of subprocess runs import it with `import toy_family`
(tests/ on PYTHONPATH, as `_trainer_helpers.quiet_env` sets it).
"""
from typing import Any, Dict, Mapping

import keras
import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2.losses import WeightedBootstrappedCrossEntropy
from deeplab2.model.meta import (SOFTMAX, TOTAL_LOSS, DenseOutput, MetaArchitecture,
                                 ModelConfig, meta_architecture_names,
                                 register_meta_architecture)

NAME = "toy_semantic"


class PixelClassifier(keras.Model):
    """A 1x1 convolution of the normalized image: semantic logits, nothing else."""

    def __init__(self, num_classes, pixel_mean, pixel_std, **kwargs):
        super().__init__(**kwargs)
        self.mean = np.array(pixel_mean, np.float32)
        self.std = np.array(pixel_std, np.float32)
        self.classifier = keras.layers.Conv2D(num_classes, 1, name="classifier")

    def call(self, images, training=None):
        return {common.SEMANTIC_LOGITS: self.classifier((images - self.mean) / self.std)}


class SemanticOnly(MetaArchitecture):
    """A toy family: per-pixel classes, stuff segments only."""

    name = "toy_semantic"
    output_keys = (common.SEMANTIC_LOGITS,)
    dense_outputs = {common.SEMANTIC_LOGITS: DenseOutput(SOFTMAX,
                                                         common.SEMANTIC_PROBABILITIES)}

    def resolve(self, config: ModelConfig) -> ModelConfig:
        unknown = set(config.architecture) - {"name"}
        if unknown:
            raise ValueError(f"unknown toy_semantic option(s) {sorted(unknown)}")
        return config.replace(architecture={"name": config.architecture.get("name", "toy")},
                              postprocess=dict(config.postprocess))

    def build(self, config, pretrained=True):
        return PixelClassifier(config.dataset.num_classes, config.pixel_mean,
                               config.pixel_std, name=config.architecture["name"])

    def training_targets(self, config):
        divisor = config.dataset.label_divisor
        return lambda label: {common.SEMANTIC_TARGET: label // divisor,
                              common.SEMANTIC_WEIGHTS: tf.ones(tf.shape(label))}

    def training_loss(self, config):
        cross_entropy = WeightedBootstrappedCrossEntropy(config.dataset.ignore_label, 1.0)

        def loss(targets, outputs):
            value = cross_entropy(targets[common.SEMANTIC_TARGET],
                                  outputs[common.SEMANTIC_LOGITS],
                                  targets[common.SEMANTIC_WEIGHTS])
            return {TOTAL_LOSS: value}
        return loss

    def postprocess(self, outputs: Dict[str, tf.Tensor], config,
                    options: Mapping[str, Any]) -> Dict[str, tf.Tensor]:
        info = config.dataset
        semantic = tf.argmax(outputs[common.SEMANTIC_PROBABILITIES], -1,
                             output_type=tf.int32)
        is_thing = tf.reduce_any(semantic[..., None] == tf.constant(info.thing_ids), -1)
        batch = tf.shape(semantic)[0]
        return {
            common.SEMANTIC: semantic,
            common.INSTANCE: tf.zeros_like(semantic),
            common.PANOPTIC: tf.where(is_thing, info.ignore_panoptic_id,
                                      semantic * info.label_divisor),
            common.INSTANCE_SCORES: tf.zeros([batch, 1]),
            common.INSTANCE_CLASSES: tf.fill([batch, 1], info.ignore_label),
            common.INSTANCE_PANOPTIC_IDS: tf.fill([batch, 1], info.ignore_panoptic_id),
        }


if NAME not in meta_architecture_names():
    register_meta_architecture(SemanticOnly())
