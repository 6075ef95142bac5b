"""Wiring, outputs and serialization of PanopticDeepLab on a tiny backbone, and
`build_model`: its options, its config and the input normalization it sets."""
import gin
import keras
import numpy as np
import pytest

from deeplab2 import common
from deeplab2.model import builder
from deeplab2.model.layers import convolutions
from deeplab2.model.meta import config_from_json
from deeplab2.model.panoptic_deeplab import family
from deeplab2.model.panoptic_deeplab.model import PanopticDeepLab

SLIM = dict(semantic_aspp_channels=8, semantic_decoder_channels=8,
            semantic_low_level_channels=(4, 4), semantic_head_channels=8,
            instance_aspp_channels=8, instance_decoder_channels=4,
            instance_low_level_channels=(4, 2), instance_head_channels=4,
            atrous_rates=(1, 2, 3))


@keras.saving.register_keras_serializable(package="deeplab2_tests")
class TinyBackbone(keras.layers.Layer):
    """Stride-2 convs exposing "res2" (stride 2), "res3" (4), ... and "final"."""

    def __init__(self, final_stride=16, **kwargs):
        super().__init__(**kwargs)
        self.final_stride = final_stride
        num_convs = {16: 4, 32: 5}[final_stride]
        self.convs = [convolutions.ConvBNAct(4, 3, strides=2, name=f"conv{i}")
                      for i in range(num_convs)]
        self.last_input = None

    def build(self, input_shape):
        shape = input_shape
        for conv in self.convs:
            conv.build(shape)
            shape = conv.compute_output_shape(shape)

    def call(self, inputs, training=None):
        self.last_input = inputs
        features = {}
        x = inputs
        for index, conv in enumerate(self.convs):
            x = conv(x, training=training)
            features[f"res{index + 2}"] = x
        features["final"] = x
        return features

    def get_config(self):
        config = super().get_config()
        config.update(final_stride=self.final_stride)
        return config


def _model(num_classes=3, final_stride=16, **kwargs):
    options = dict(SLIM)
    options.update(kwargs)
    return PanopticDeepLab(TinyBackbone(final_stride), num_classes, **options)


def _images(height=33, width=49, batch=1, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (batch, height, width, 3)).astype("float32")


@pytest.mark.parametrize("final_stride", [16, 32])
def test_outputs_at_input_resolution(final_stride):
    model = _model(final_stride=final_stride)
    outputs = model(_images(batch=2), training=True)
    assert set(outputs) == {common.SEMANTIC_LOGITS, common.CENTER_HEATMAP,
                            common.OFFSET}
    assert outputs[common.SEMANTIC_LOGITS].shape == (2, 33, 49, 3)
    assert outputs[common.CENTER_HEATMAP].shape == (2, 33, 49, 1)
    assert outputs[common.OFFSET].shape == (2, 33, 49, 2)
    assert all(v.dtype == "float32" for v in outputs.values())


def test_mixed_precision_outputs_are_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _model()
        outputs = model(_images())
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert all(v.dtype == "float32" for v in outputs.values())


def test_offsets_rescaled_by_resize_ratio():
    offsets = keras.ops.ones((1, 3, 5, 2))
    resized = PanopticDeepLab.upsample_outputs({common.OFFSET: offsets},
                                               (5, 13))[common.OFFSET].numpy()
    # align corners: y scale (5 - 1) / (3 - 1) = 2, x scale 12 / 4 = 3.
    np.testing.assert_allclose(resized[..., 0], 2.0)
    np.testing.assert_allclose(resized[..., 1], 3.0)


def test_network_outputs_are_the_heads_and_upsample_to_the_model_outputs():
    model = _model()
    images = _images()
    architecture = family.PanopticDeepLabArchitecture()
    raw = architecture.network_outputs(model, images)
    # The decoder's resolution: TinyBackbone's lowest level, stride 2 of 33x49.
    assert {k: tuple(v.shape) for k, v in raw.items()} == {
        common.SEMANTIC_LOGITS: (1, 17, 25, 3), common.CENTER_HEATMAP: (1, 17, 25, 1),
        common.OFFSET: (1, 17, 25, 2)}
    upsampled = architecture.upsample_network_outputs(raw, (33, 49))
    expected = model(images, training=False)
    for key, value in expected.items():
        np.testing.assert_array_equal(upsampled[key].numpy(), value.numpy(), err_msg=key)


def test_semantic_only_has_no_instance_branch():
    model = _model(semantic_only=True)
    outputs = model(_images())
    assert set(outputs) == {common.SEMANTIC_LOGITS}
    assert model.instance_aspp is None and model.center_head is None


def test_shared_aspp_and_decoder_variants_have_fewer_weights():
    images = _images()
    counts = []
    for dual_aspp, dual_decoder in ((True, True), (False, True),
                                    (False, False)):
        model = _model(dual_aspp=dual_aspp, dual_decoder=dual_decoder)
        assert model(images)[common.OFFSET].shape == (1, 33, 49, 2)
        counts.append(model.count_params())
    assert counts[0] > counts[1] > counts[2]
    with pytest.raises(ValueError):
        _model(dual_aspp=True, dual_decoder=False)


def test_deeplabv3plus_decoder_variant():
    model = _model(decoder_variant="deeplabv3plus",
                   semantic_low_level_channels=(6,),
                   instance_low_level_channels=(4,))
    outputs = model(_images())
    assert outputs[common.SEMANTIC_LOGITS].shape == (1, 33, 49, 3)
    assert len(model.semantic_decoder.fusions[0]) == 2
    with pytest.raises(ValueError):
        _model(decoder_variant="deeplabv3plus")


def test_standard_convs_have_more_weights_than_separable():
    images = _images()
    separable = _model()
    standard = _model(aspp_sep_conv=False, decoder_sep_conv=False)
    separable(images)
    standard(images)
    assert standard.count_params() > separable.count_params()


def test_config_and_keras_file_round_trip(tmp_path):
    model = _model(pool_size=(2, 3))
    images = _images(seed=1)
    expected = model(images)

    clone = PanopticDeepLab.from_config(model.get_config())
    clone(images)
    clone.set_weights(model.get_weights())
    for key, value in clone(images).items():
        np.testing.assert_allclose(value, expected[key], atol=1e-6)

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    for key, value in loaded(images).items():
        np.testing.assert_allclose(value, expected[key], atol=1e-6)


@pytest.fixture
def tiny_backbone(monkeypatch):
    """Makes "tiny" a backbone name of build_model; returns the arguments of
    the last backbone built."""
    created = {}

    def fake_get_backbone(name, output_stride, **kwargs):
        created.clear()
        created.update(name=name, output_stride=output_stride, **kwargs)
        return TinyBackbone(output_stride)

    names = family.backbones.backbone_names()
    monkeypatch.setattr(family.backbones, "get_backbone", fake_get_backbone)
    monkeypatch.setattr(family.backbones, "backbone_names", lambda: sorted(names + ["tiny"]))
    return created


def _build_tiny(**kwargs):
    options = dict(SLIM, backbone="tiny", dataset="synthetic", output_stride=16)
    options.update(kwargs)
    return builder.build_model(**options)


def test_build_model_with_gin(tiny_backbone):
    gin.clear_config()
    try:
        gin.parse_config("\n".join([
            "build_model.backbone = 'tiny'",
            "build_model.dataset = 'cityscapes'",
            "build_model.output_stride = 32",
            "build_model.crop_size = (65, 129)",
            "build_model.backbone_kwargs = {'width': 2}",
            "build_model.semantic_aspp_channels = 8",
            "build_model.semantic_decoder_channels = 8",
            "build_model.semantic_head_channels = 8",
            "build_model.instance_aspp_channels = 8",
            "build_model.instance_decoder_channels = 4",
            "build_model.instance_head_channels = 4",
            "build_model.feature_keys = ('final', 'res3', 'res2')",
        ]))
        model = builder.build_model()
    finally:
        gin.clear_config()
    assert tiny_backbone == {"name": "tiny", "output_stride": 32, "width": 2,
                             "bn_epsilon": 1e-3}
    assert model.num_classes == 19
    assert model.atrous_rates == (3, 6, 9)
    assert model.pool_size == (3, 5)
    assert model.semantic_aspp.pool_size == (3, 5)
    assert model.model_config.dataset.name == "cityscapes"
    assert model.model_config.crop_size == (65, 129)
    # Built with its variables: weights exist before any call of ours.
    assert model.built and model.count_params() > 0
    outputs = model(_images(65, 129))
    assert outputs[common.SEMANTIC_LOGITS].shape == (1, 65, 129, 19)


def test_build_model_variant_defaults_and_multi_grid(tiny_backbone):
    model = builder.build_model(backbone="tiny", dataset="synthetic", output_stride=16,
                                multi_grid=[1, 2, 4], decoder_variant="deeplabv3plus")
    assert tiny_backbone == {"name": "tiny", "output_stride": 16, "multi_grid": (1, 2, 4),
                             "bn_epsilon": 1e-3}  # the model's, down to the backbone
    assert model.num_classes == model.model_config.dataset.num_classes
    assert model.semantic_low_level_channels == (48,)
    assert model.instance_low_level_channels == (32,)
    assert model.atrous_rates == (6, 12, 18)
    assert model.pool_size is None


def test_model_config_round_trips_through_json(tiny_backbone):
    model = _build_tiny(crop_size=(33, 49), pixel_mean=(120, 115, 100.5), pixel_std=60,
                        multi_grid=(1, 2), postprocess={"nms_kernel": 3})
    config = model.model_config
    assert config.postprocess["nms_kernel"] == 3
    assert config.pixel_mean == (120.0, 115.0, 100.5) and config.pixel_std == (60.0,) * 3
    assert config.architecture["multi_grid"] == [1, 2]
    restored = config_from_json(config.to_json(), "model_config.json")
    assert restored == config


def test_unknown_architecture_option_is_named():
    with pytest.raises(ValueError, match="foo"):
        builder.build_model(dataset="synthetic", backbone="mobilenet_v3_small", foo=1)


def test_unknown_meta_architecture_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown meta_architecture 'no_such_family'; "
                       "registered: .*panoptic_deeplab, panoptic_fpn"):
        builder.build_model("no_such_family", dataset="synthetic")


@pytest.mark.parametrize("mean, std", [(100, 50), ((100, 120, 140), (50, 60, 70))])
def test_pixel_mean_and_std_set_the_normalization(tiny_backbone, mean, std):
    """A model normalizing with (mean, std) sees in x what the default model
    (x / 127.5 - 1) sees in (x - mean) / std * 127.5 + 127.5."""
    custom = _build_tiny(pixel_mean=mean, pixel_std=std)
    default = _build_tiny()
    default.set_weights(custom.get_weights())
    images = _images(seed=2)
    rescaled = ((images - np.float32(mean)) / np.float32(std) * 127.5 + 127.5)
    expected = default(rescaled.astype(np.float32), training=False)
    outputs = custom(images, training=False)
    np.testing.assert_allclose(custom.backbone.last_input, default.backbone.last_input,
                               atol=1e-5)
    for key, value in outputs.items():
        np.testing.assert_allclose(value, expected[key], atol=1e-4, err_msg=key)
    # The inputs differ: a model ignoring pixel_mean / pixel_std fails above.
    assert np.abs(rescaled - images).max() > 10


def test_default_normalization_is_x_over_127_5_minus_1(tiny_backbone):
    model = _build_tiny()
    images = _images(seed=3)
    model(images, training=False)
    np.testing.assert_array_equal(np.asarray(model.backbone.last_input),
                                  images / np.float32(127.5) - np.float32(1))
