"""Panoptic FPN through the library's contract: the training pipeline (crops that
are multiples of 32, targets, per-example sample seeds), the train loop with the
family's forward pass, the predictor and the evaluator."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2.data import pipeline
from deeplab2.evaluation.model_evaluation import Evaluator
from deeplab2.inference import Predictor
from deeplab2.model.meta import TOTAL_LOSS
from deeplab2.model.panoptic_fpn.targets import MODEL_TARGET_KEYS
from deeplab2.training.train_loop import LoopOptions, TrainLoop

from panoptic_fpn_testing import FAMILY, SIZE, small_model

NO_AUGMENTATION = pipeline.TrainingInput(min_scale=1.0, max_scale=1.0, flip_prob=0.0)


@pytest.fixture(scope="module")
def model():
    return small_model()


def _training_dataset(records, config, start_step=0, seed=0):
    return pipeline.training_dataset(
        f"{records}/train-*.tfrecord", config, FAMILY.training_targets(config),
        global_batch_size=2, seed=seed, start_step=start_step, options=NO_AUGMENTATION)


def test_the_training_stream_carries_what_the_model_reads(model, tiny_records):
    config = model.model_config
    batch = next(iter(_training_dataset(tiny_records, config)))
    assert set(MODEL_TARGET_KEYS) | {common.IMAGE, common.SEMANTIC_TARGET} <= set(batch)
    assert batch[common.IMAGE].shape == (2, *SIZE, 3)
    seeds = batch[common.SAMPLE_SEED].numpy()
    assert seeds.dtype == np.int32 and seeds.shape == (2, 2) and seeds[0].tolist() != \
        seeds[1].tolist()
    # Deterministic and resume-safe: the second batch of a run is the first
    # batch of a run resumed at step 1.
    second = list(_training_dataset(tiny_records, config).take(2))[1]
    resumed = next(iter(_training_dataset(tiny_records, config, start_step=1)))
    np.testing.assert_array_equal(second[common.SAMPLE_SEED], resumed[common.SAMPLE_SEED])
    other = next(iter(_training_dataset(tiny_records, config, seed=1)))
    assert not np.array_equal(other[common.SAMPLE_SEED], batch[common.SAMPLE_SEED])


def test_predictor_and_evaluator(model, tiny_records):
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    predictions = Predictor(model).predict_image(tf.constant(image))
    assert predictions[common.PANOPTIC].shape == (50, 70)
    assert predictions[common.INSTANCE_SCORES].shape == (20,)
    with pytest.raises(ValueError, match="no dense outputs"):
        Predictor(model, flip=True)
    result = Evaluator(f"{tiny_records}/val-*.tfrecord", num_pictures=0).evaluate(
        Predictor(model), tf.distribute.get_strategy(), step=0)
    assert result["num_images"] == 2


@pytest.mark.slow
def test_the_train_loop_runs_the_family_forward_pass(tmp_path, tiny_records):
    # About 40 s: tracing the training step.
    model = small_model(seed=2)
    config = model.model_config
    loop = TrainLoop(tf.distribute.get_strategy(), model, FAMILY.training_loss(config),
                     keras.optimizers.SGD(0.01),
                     lambda context, start: _training_dataset(tiny_records, config, start),
                     str(tmp_path), LoopOptions(num_steps=2, global_batch_size=2,
                                                steps_per_loop=2, checkpoint_every=2),
                     forward_fn=FAMILY.training_outputs)
    losses = loop.train()
    assert np.isfinite(losses[TOTAL_LOSS]) and losses[TOTAL_LOSS] > 0
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-2")
