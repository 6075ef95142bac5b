"""The Panoptic FPN training step and inference + post-processing compile with XLA,
agree with the uncompiled computation and use no float64."""
import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2.utils import graph_dtypes

from panoptic_fpn_testing import (FAMILY, as_numpy, losses_and_gradients, small_model,
                                  synthetic_batch)


@pytest.fixture(scope="module")
def model():
    return small_model()


@pytest.mark.slow
def test_the_training_step_compiles(model):
    # About a minute on two busy cores: proposal NMS, RoIAlign and their gradients.
    batch = synthetic_batch(model.model_config)
    eager, _ = losses_and_gradients(model, batch)
    compiled, gradients = tf.function(losses_and_gradients, jit_compile=True)(model, batch)
    for key in eager:
        # RPN sampling may break IoU ties differently when XLA fuses the IoUs.
        np.testing.assert_allclose(compiled[key], eager[key], rtol=2e-3, atol=1e-4,
                                   err_msg=key)
    assert all(np.all(np.isfinite(g)) for g in gradients)


@pytest.mark.slow
def test_inference_and_postprocess_compile(model):
    config = model.model_config
    images = synthetic_batch(config)[common.IMAGE]

    def predict(images):
        return FAMILY.postprocess(model(images, training=False), config, config.postprocess)

    eager = as_numpy(predict(images))
    function = tf.function(predict, jit_compile=True)
    compiled = as_numpy(function(images))
    assert graph_dtypes.ops_producing(function.get_concrete_function(images),
                                      [tf.float64]) == []
    assert set(compiled) == set(eager)
    for key in eager:
        if key in (common.INSTANCE_SCORES, common.BOXES):
            np.testing.assert_allclose(compiled[key], eager[key], atol=1e-4, err_msg=key)
        else:
            # A pasted pixel at exactly 0.5 may flip under XLA's float rounding.
            assert np.mean(compiled[key] != eager[key]) < 1e-3, key
