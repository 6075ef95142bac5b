"""Every weight of every model is saved by tf.train.Checkpoint.

Keras 3 keeps layers held in Python lists out of TensorFlow's checkpoint object
graph; a weight missing there would silently not be saved or restored.
"""
import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model import build_model
from deeplab2.model.backbones import get_backbone

SLIM = dict(semantic_aspp_channels=8, semantic_decoder_channels=8,
            semantic_low_level_channels=(8, 8), semantic_head_channels=8,
            instance_aspp_channels=8, instance_decoder_channels=8,
            instance_low_level_channels=(8, 8), instance_head_channels=8)


def _checkpointed_variable_ids(root):
    checkpoint = tf.train.Checkpoint(root=root)  # the view holds it weakly
    view = tf.train.TrackableView(checkpoint)
    return {id(obj) for obj in view.descendants()}


def _unsaved(model):
    saved = _checkpointed_variable_ids(model)
    return [w.path for w in model.weights if id(w) not in saved]


@pytest.mark.parametrize("decoder_variant", ["panoptic_deeplab", "deeplabv3plus"])
def test_panoptic_deeplab_weights_are_all_checkpointed(decoder_variant):
    slim = dict(SLIM)
    if decoder_variant == "deeplabv3plus":
        slim.update(semantic_low_level_channels=(8,), instance_low_level_channels=(8,))
    model = build_model(dataset="synthetic", backbone="mobilenet_v3_small", crop_size=(65, 65),
                        decoder_variant=decoder_variant, **slim)
    model(tf.zeros((1, 65, 65, 3)))
    assert len(model.weights) > 300
    assert _unsaved(model) == []


@pytest.mark.parametrize("name, kwargs", [
    ("resnet50_beta", {}), ("xception65", {}), ("mobilenet_v3_large", {}),
    ("swidernet_0.25_0.25_0.75", {}), ("wide_resnet41_sac", {}),
    ("resnet50", dict(drop_path_survival_rate=0.8)),
])
def test_backbone_weights_are_all_checkpointed(name, kwargs):
    backbone = get_backbone(name, output_stride=16, **kwargs)
    assert backbone.weights
    assert _unsaved(backbone) == []


def test_a_checkpoint_restores_into_a_model_built_again_in_the_same_process(tmp_path):
    # Keras gives the second model's unnamed layers other default names; the
    # checkpoint must not depend on them.
    def make():
        model = build_model(dataset="synthetic", backbone="mobilenet_v3_small",
                            crop_size=(65, 65), **SLIM)
        model(tf.zeros((1, 65, 65, 3)))
        return model

    first = make()
    for variable in first.weights:
        variable.assign(tf.random.stateless_uniform(variable.shape, (1, len(variable.path)),
                                                    -0.1, 0.1) + (1.0 if "variance" in
                                                                  variable.path else 0.0))
    path = tf.train.Checkpoint(model=first).save(str(tmp_path / "ckpt"))
    second = make()
    tf.train.Checkpoint(model=second).restore(path).assert_existing_objects_matched()
    images = tf.random.stateless_uniform((1, 65, 65, 3), (2, 3), 0, 255)
    for key, value in first(images, training=False).items():
        np.testing.assert_array_equal(second(images, training=False)[key], value)
