"""Seamless options: defaults by dataset (extra FPN levels, the Vistas anchors,
detections), the backbone's LeakyReLU, validation errors naming the option, the
JSON round trip, and the built model's anchors and loss."""
import numpy as np
import pytest

from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.model import get_meta_architecture
from deeplab2.model.meta import config_from_json, make_config
from deeplab2.model.seamless.family import SeamlessArchitecture

FAMILY = get_meta_architecture("seamless")


def _config(dataset="cityscapes", crop_size=(512, 1024), **architecture):
    return make_config("seamless", get_dataset_info(dataset), output_stride=32,
                       crop_size=crop_size, pixel_mean=127.5, pixel_std=127.5,
                       architecture=architecture, postprocess={})


def test_registered_under_its_name():
    assert isinstance(FAMILY, SeamlessArchitecture) and FAMILY.name == "seamless"


@pytest.mark.parametrize("dataset, levels, sizes, ratios, detections", [
    ("cityscapes", 1, [32, 64, 128, 256, 512], [0.5, 1, 2], 100),
    ("mapillary_vistas", 2, [8, 16, 32, 64, 128, 256], [0.2, 0.5, 1, 2, 5], 256),
    ("synthetic", 1, [32, 64, 128, 256, 512], [0.5, 1, 2], 100),
])
def test_defaults_derive_from_the_dataset(dataset, levels, sizes, ratios, detections):
    arch = _config(dataset).architecture
    assert arch["fpn_extra_levels"] == levels
    assert arch["anchor_sizes"] == sizes and arch["anchor_ratios"] == ratios
    assert arch["max_detections"] == detections
    assert (arch["neck_normalization"], arch["head_normalization"], arch["activation"],
            arch["backbone_activation"]) == ("batch_norm", "group_norm", "leaky_relu",
                                             "leaky_relu")
    assert (arch["instance_loss_weight"], arch["semantic_loss_weight"],
            arch["semantic_top_fraction"]) == (1.0, 1.0, 0.25)
    assert (arch["frozen_bn"], arch["freeze_at"], arch["bn_epsilon"]) == (True, 2, 1e-5)


def test_the_config_survives_json():
    config = _config("mapillary_vistas")
    assert config_from_json(config.to_json(), "test") == config


@pytest.mark.parametrize("option, value, message", [
    ("fpn_extra_levels", 0, "fpn_extra_levels must be an integer >= 1"),
    ("anchor_sizes", [32, 64], "anchor_sizes must be one size per FPN level"),
    ("anchor_ratios", [], "anchor_ratios must be a non-empty list of positive numbers"),
    ("semantic_top_fraction", 0.0, r"semantic_top_fraction must be a number in \(0, 1\]"),
    ("head_normalization", "layer_norm", "head_normalization must be one of"),
    ("semantic_pool_size", 0, "semantic_pool_size must be a positive integer"),
    ("colour", 1, "colour"),
])
def test_bad_options_name_themselves(option, value, message):
    with pytest.raises(ValueError, match=message):
        _config(**{option: value})


def test_resnets_take_leaky_relu_and_other_backbones_keep_theirs():
    config = _config("synthetic", crop_size=(64, 64), backbone="resnet50",
                     backbone_kwargs={"layout": "deeplab2"})
    backbone = FAMILY.build_backbone(config.architecture, pretrained=False)
    blocks = [layer for layer in backbone._flatten_layers() if hasattr(layer, "stride_on_3x3")]
    assert blocks and {block.activation for block in blocks} == {"leaky_relu"}
    x = np.full((1, 1, 1, 1), -2.0, np.float32)
    assert float(blocks[0]._act(x)[0, 0, 0, 0]) == pytest.approx(-0.02)
    relu = _config("synthetic", crop_size=(64, 64), backbone="resnet50", backbone_activation=None)
    blocks = [layer for layer in FAMILY.build_backbone(relu.architecture, False)
              ._flatten_layers() if hasattr(layer, "stride_on_3x3")]
    assert {block.activation for block in blocks} == {"relu"}
    mobile = _config("synthetic", crop_size=(64, 64), backbone="mobilenet_v3_small")
    assert FAMILY.build_backbone(mobile.architecture, pretrained=False) is not None


def test_the_loss_and_model_share_the_vistas_anchors():
    config = _config("mapillary_vistas")
    loss = FAMILY.training_loss(config)
    assert loss.anchor_set.sizes == (8.0, 16.0, 32.0, 64.0, 128.0, 256.0)
    assert loss.anchor_set.ratios == (0.2, 0.5, 1.0, 2.0, 5.0)
    assert loss.anchor_set.strides == (4, 8, 16, 32, 64, 128)
    anchors = loss.anchor_set.anchors(64, 64).numpy()
    # Level P2 (16 x 16 positions, 5 ratios) first; the ratio-1 anchor is 8 x 8.
    assert anchors.shape == (5 * sum((64 // s) ** 2 for s in (4, 8, 16, 32)) + 5 + 5, 4)
    np.testing.assert_allclose(anchors[2], [-4, -4, 4, 4])
    np.testing.assert_allclose(anchors[0, 3] - anchors[0, 1],
                               0.2 * (anchors[0, 2] - anchors[0, 0]), rtol=1e-6)
