"""Panoptic FPN options: defaults derived from the dataset, validation errors naming
the option, input sizes, and registration."""
import pytest
import tensorflow as tf

from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.model import get_meta_architecture
from deeplab2.model.meta import config_from_json, make_config
from deeplab2.model.panoptic_fpn.family import PanopticFPNArchitecture

FAMILY = get_meta_architecture("panoptic_fpn")


def _config(dataset="coco", crop_size=(512, 1024), output_stride=32, postprocess=None,
            **architecture):
    return make_config("panoptic_fpn", get_dataset_info(dataset), output_stride=output_stride,
                       crop_size=crop_size, pixel_mean=127.5, pixel_std=127.5,
                       architecture=architecture, postprocess=postprocess or {})


def test_registered_under_its_name():
    assert isinstance(FAMILY, PanopticFPNArchitecture)
    assert FAMILY.dense_outputs == {}


@pytest.mark.parametrize("dataset, other, weights, area", [
    ("coco", True, (1.0, 0.5), 4096),
    ("cityscapes", False, (0.5, 1.0), 2048),
    ("synthetic", False, (1.0, 1.0), 64),
])
def test_defaults_derive_from_the_dataset(dataset, other, weights, area):
    config = _config(dataset)
    arch, post = config.architecture, config.postprocess
    assert arch["semantic_other_class"] is other
    assert (arch["instance_loss_weight"], arch["semantic_loss_weight"]) == weights
    assert post == {"score_threshold": 0.5, "overlap_threshold": 0.5, "stuff_area_limit": area}
    assert (arch["frozen_bn"], arch["freeze_at"], arch["synchronized_bn"]) == (True, 2, False)
    assert (arch["fpn_channels"], arch["semantic_channels"], arch["box_regression_beta"]) == (
        256, 128, 0.0)
    assert (arch["rpn_pre_nms_top_k_train"], arch["rpn_pre_nms_top_k_test"],
            arch["rpn_post_nms_top_k"], arch["rpn_nms_threshold"]) == (2000, 1000, 1000, 0.7)
    assert (arch["detection_score_threshold"], arch["detection_nms"],
            arch["max_detections"], arch["max_instances"]) == (0.05, 0.5, 100, 100)


def test_explicit_values_win_and_resolving_is_idempotent():
    config = _config("coco", semantic_other_class=False, instance_loss_weight=0.75,
                     semantic_loss_weight=0.75, postprocess={"stuff_area_limit": 100})
    assert config.architecture["semantic_other_class"] is False
    assert config.architecture["instance_loss_weight"] == 0.75
    assert config.postprocess["stuff_area_limit"] == 100
    assert FAMILY.resolve(config) == config
    assert config_from_json(config.to_json(), "test") == config


@pytest.mark.parametrize("options, message", [
    (dict(depth=3), r"unknown panoptic_fpn architecture option\(s\) \['depth'\]"),
    (dict(postprocess={"nms_kernel": 3}), r"unknown panoptic_fpn postprocess option"),
    (dict(backbone="resnet7"), "unknown backbone 'resnet7'"),
    (dict(freeze_at=1), "freeze_at must be one of"),
    (dict(detection_nms=1.5), "detection_nms must be a number in"),
    (dict(fpn_channels=0), "fpn_channels must be a positive integer"),
    (dict(semantic_channels=100), "semantic_channels must be a multiple of semantic_groups"),
    (dict(frozen_bn="yes"), "frozen_bn must be True or False"),
    (dict(bn_momentum=1.0), r"bn_momentum must be a number in \[0, 1\)"),
    (dict(semantic_loss_weight=-1), "semantic_loss_weight must be a number >= 0"),
    (dict(roi_samples=2), "roi_samples must be an integer >= 4"),
    (dict(max_detections=256), "max_detections must be below the dataset's label_divisor"),
    (dict(postprocess={"score_threshold": 2}), "score_threshold must be a number in"),
    (dict(postprocess={"stuff_area_limit": -1}), "stuff_area_limit must be an integer"),
    (dict(output_stride=16), "panoptic_fpn needs output_stride 32"),
    (dict(crop_size=(513, 1025)), "multiples of 32"),
])
def test_invalid_options_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        _config(**options)


def test_a_dataset_without_things_is_refused():
    info = get_dataset_info("synthetic")
    stuff_only = type(info)(**{**info.__dict__, "name": "stuff", "thing_ids": ()})
    with pytest.raises(ValueError, match="no thing classes"):
        make_config("panoptic_fpn", stuff_only, output_stride=32, crop_size=None,
                    pixel_mean=127.5, pixel_std=127.5, architecture={}, postprocess={})


def test_input_sizes_are_multiples_of_32():
    config = _config()
    assert [FAMILY.padded_size(s, config) for s in (1, 32, 33, 64, 70)] == [32, 32, 64, 64, 96]
    assert int(FAMILY.padded_size(tf.constant(70), config)) == 96
    assert FAMILY.scaled_size(800, 0.5, config) == 384  # 12.5 -> 12 (half to even) * 32
    assert FAMILY.scaled_size(1024, 1.5, config) == 1536
    assert int(FAMILY.scaled_size(tf.constant(1024), 1.5, config)) == 1536
    assert config.check_input_size([64, 96]) == (64, 96)
    with pytest.raises(ValueError, match="multiples of 32"):
        config.check_input_size((65, 97))
