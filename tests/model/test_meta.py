"""The meta-architecture contract: a family defined outside the library, registered
by name, goes through building, the input pipeline, the train loop, evaluation,
a model directory and export without any change to the library."""
from typing import Any, Dict, Mapping

import keras
import numpy as np
import pytest
import tensorflow as tf

import deeplab2
from deeplab2 import common
from deeplab2.data import pipeline
from deeplab2.evaluation.model_evaluation import Evaluator
from deeplab2.export import export_saved_model
from deeplab2.inference import Predictor
from deeplab2.losses import WeightedBootstrappedCrossEntropy
from deeplab2.model import build_model, model_dir
from deeplab2.model.meta import (SOFTMAX, TOTAL_LOSS, DenseOutput, MetaArchitecture,
                                 ModelConfig, get_meta_architecture,
                                 register_meta_architecture)
from deeplab2.training.train_loop import LoopOptions, TrainLoop


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


register_meta_architecture(SemanticOnly())


def test_registry_lists_and_refuses_names():
    assert isinstance(get_meta_architecture("toy_semantic"), SemanticOnly)
    assert "panoptic_deeplab" in deeplab2.model.meta_architecture_names()
    with pytest.raises(ValueError, match="already registered"):
        class Other(SemanticOnly):
            pass
        register_meta_architecture(Other())
    with pytest.raises(ValueError, match=r"unknown toy_semantic option\(s\) \['depth'\]"):
        build_model("toy_semantic", "synthetic", depth=3)


@pytest.mark.slow
def test_a_new_family_trains_evaluates_reloads_and_exports(tmp_path, tiny_records):
    model = build_model("toy_semantic", "synthetic", crop_size=(65, 97),
                        pixel_mean=(120.0, 110.0, 100.0), pixel_std=60.0)
    config = model.model_config
    family = get_meta_architecture(config.meta_architecture)
    strategy = tf.distribute.get_strategy()

    def dataset_fn(context, start_step):
        return pipeline.training_dataset(
            f"{tiny_records}/train-*.tfrecord", config, family.training_targets(config),
            global_batch_size=2, seed=0, start_step=start_step, input_context=context)

    evaluator = Evaluator(f"{tiny_records}/val-*.tfrecord", num_pictures=0)
    untrained = evaluator.evaluate(Predictor(model), strategy, step=0)
    model_dir.write_model_config(str(tmp_path), config)
    loop = TrainLoop(strategy, model, family.training_loss(config),
                     keras.optimizers.Adam(0.05), dataset_fn, str(tmp_path),
                     LoopOptions(num_steps=30, global_batch_size=2, steps_per_loop=10,
                                 checkpoint_every=30))
    first = loop.train(until_step=10)[TOTAL_LOSS]
    last = loop.train()[TOTAL_LOSS]
    assert last < 0.7 * first, (first, last)

    result = evaluator.evaluate(Predictor(model), strategy, step=30)
    assert result["num_images"] == 2
    assert result["miou"] > untrained["miou"] + 0.1, (untrained["miou"], result["miou"])

    loaded = deeplab2.load_model(str(tmp_path))
    assert loaded.model_config == config and loaded.name == "toy"
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    expected = Predictor(loaded).predict_image(tf.constant(image))
    export_saved_model(Predictor(loaded), str(tmp_path / "exported"))
    served = tf.saved_model.load(str(tmp_path / "exported")).signatures["serving_default"](
        image=tf.constant(image))
    np.testing.assert_array_equal(served[common.PANOPTIC], expected[common.PANOPTIC])
