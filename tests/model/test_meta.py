"""The meta-architecture contract: a family defined outside the library, registered
by name, goes through building, the input pipeline, the train loop, evaluation,
a model directory and export without any change to the library."""
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
from deeplab2.model import build_model, model_dir
from deeplab2.model.meta import TOTAL_LOSS, get_meta_architecture, register_meta_architecture
from deeplab2.training.train_loop import LoopOptions, TrainLoop
from toy_family import SemanticOnly


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
    # Seeded: an unseeded initialization scored mIoU 0.00 to 0.25 untrained (six
    # seeds), trained 0.24 each time; this one scores 0.006, so the comparison
    # below measures training, not the draw.
    keras.utils.set_random_seed(3)
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
