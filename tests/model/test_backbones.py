"""Backbones: feature shapes at every output stride, layouts, parameters."""
import keras
import numpy as np
import pytest

from deeplab2.model import backbones
from deeplab2.model.backbones import wide_resnet

INPUT = np.random.default_rng(0).uniform(-1, 1, (2, 33, 33, 3)).astype(
    "float32")
KEYS = ("res2", "res3", "res4", "res5", "final")


def _spatial(output_stride):
    """Feature sizes of a 33x33 input: res2..res4 at 4, 8, 16 (capped)."""
    size = {s: 33 // s + 1 for s in (4, 8, 16, 32)}
    capped = [size[min(s, output_stride)] for s in (4, 8, 16, 32)]
    return dict(zip(KEYS, capped + capped[-1:]))


# Every family at every output stride (slim SWideRNet; the full-width ones
# share its code and are checked by structure and parameter counts).
SHAPE_CASES = [
    ("resnet50_beta", {}), ("mobilenet_v3_small", {}),
    ("mobilenet_v3_large", {}), ("xception71", {}),
    ("swidernet_0.25_0.25_0.75", {}),
    ("swidernet", dict(width1=0.25, width2=0.25, depth=0.75, use_se=False,
                       sac_stages=(3, 4, 5, 6), multi_grid=(1, 2))),
]


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("name,kwargs", SHAPE_CASES,
                         ids=[case[0] + str(i) for i, case in
                              enumerate(SHAPE_CASES)])
def test_feature_shapes_and_dtypes(name, kwargs, output_stride):
    backbone = backbones.get_backbone(name, output_stride=output_stride,
                                      **kwargs)
    features = backbone(INPUT)
    assert sorted(features) == sorted(KEYS)
    channels = backbone.feature_channels
    for key, size in _spatial(output_stride).items():
        assert tuple(features[key].shape) == (2, size, size, channels[key])
        assert features[key].dtype == "float32"
        assert np.all(np.isfinite(np.asarray(features[key])))


def test_feature_channels_match_the_references():
    expected = {
        (backbones.ResNet, ()): (256, 512, 1024, 2048),
        (backbones.Xception, (65,)): (256, 728, 1024, 2048),
        # DeepLab's MobileNetV3 "seg" end points; last block halved.
        (backbones.MobileNetV3, ("large",)): (72, 120, 672, 480),
        (backbones.MobileNetV3, ("small",)): (16, 88, 144, 288),
        (backbones.SWideRNet, ()): (256, 512, 1024, 2048),
        (backbones.SWideRNet, (0.25, 0.35, 1)): (88, 180, 360, 716),
        (backbones.SWideRNet, (0.25, 0.25, 0.35)): (32, 128, 128, 512),
    }
    for (constructor, args), channels in expected.items():
        got = constructor(*args).feature_channels  # unbuilt: no weights
        assert tuple(got[k] for k in KEYS[:4]) == channels, args
        assert got["final"] == got["res5"]


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="known backbones: .*resnet50"):
        backbones.get_backbone("resnet51")
    names = backbones.backbone_names()
    for name in ("resnet50", "resnet101", "resnet50_beta",
                 "mobilenet_v3_small", "mobilenet_v3_large", "xception65",
                 "xception71", "wide_resnet41", "wide_resnet41_sac",
                 "swidernet_0.25_0.25_0.75", "swidernet_1_1_4.5",
                 "swidernet_sac_1_1_1"):
        assert name in names


def test_unsupported_options_raise():
    with pytest.raises(ValueError, match="multi_grid"):
        backbones.get_backbone("mobilenet_v3_small", multi_grid=(1, 2))
    with pytest.raises(ValueError, match="drop path"):
        backbones.get_backbone("xception65", drop_path_survival_rate=0.8)
    with pytest.raises(ValueError, match="output_stride"):
        backbones.get_backbone("mobilenet_v3_small", output_stride=4)
    with pytest.raises(ValueError, match="ImageNet"):
        backbones.get_backbone("xception65", weights="imagenet")


def _blocks(model, prefix):
    return [layer for layers, _ in model.stages for layer in layers
            if layer.name.startswith(prefix)]


def test_resnet_atrous_rates_and_multi_grid():
    model = backbones.ResNet(50, output_stride=8, multi_grid=(1, 2, 4))
    assert [b.strides for b in _blocks(model, "conv4")][:1] == [1]
    assert {b.dilation_rate for b in _blocks(model, "conv4")} == {2}
    assert [b.dilation_rate for b in _blocks(model, "conv5")] == [4, 8, 16]


def test_swidernet_layout_of_table_1():
    model = wide_resnet.SWideRNet(1, 1, 1, output_stride=16)
    counts = {s: len(_blocks(model, f"conv{s}_")) for s in range(2, 7)}
    assert counts == {2: 3, 3: 3, 4: 6, 5: 3, 6: 3}
    # The last block of conv3..conv5 downsamples (conv5 dilated at OS16).
    assert [b.strides for b in _blocks(model, "conv3")] == [1, 1, 2]
    assert [b.strides for b in _blocks(model, "conv5")] == [1, 1, 1]
    assert [b.dilation_rates for b in _blocks(model, "conv5")] == [
        (1, 1), (1, 1), (1, 1)]
    conv6 = _blocks(model, "conv6")
    assert [b.dilation_rate for b in conv6] == [2, 2, 2]
    assert all(b.use_sac and b.use_se for b in conv6)
    assert not any(b.use_sac for b in _blocks(model, "conv5"))
    assert not any(b.use_se for b in _blocks(model, "conv2"))
    # Depth scaling: int(n * l), at least one block.
    for depth, expected in ((0.75, [2, 4, 2, 2]), (4.5, [13, 27, 13, 13]),
                            (0.35, [1, 2, 1, 1])):
        model = wide_resnet.SWideRNet(depth=depth)
        assert [len(_blocks(model, f"conv{s}_")) for s in range(3, 7)] == (
            expected)


def _main_path_convolutions(layer, path=""):
    """Paths of the convolutions of a model that are not on a shortcut or in
    squeeze-and-excitation (the layers the paper counts)."""
    found = []
    for sub in getattr(layer, "_layers", []):
        if sub.name in ("shortcut", "se"):
            continue
        if isinstance(sub, (keras.layers.Conv2D, wide_resnet.SwitchableAtrousConv)):
            found.append(f"{path}/{sub.name}")
        else:
            found += _main_path_convolutions(sub, f"{path}/{sub.name}")
    return found


@pytest.mark.parametrize("depth", [1, 2])
def test_swidernet_has_7_plus_33_l_layers(depth):
    """Paper 004: the backbone has 7 + 33 l layers (SE and SAC extras not
    counted): the stem, conv2's 3 basic blocks, and l times 33 after."""
    model = wide_resnet.SWideRNet(0.25, 0.25, depth, output_stride=32)
    model(INPUT[:1])
    convolutions = _main_path_convolutions(model)
    assert convolutions[0] == "/conv1/conv"
    assert len(convolutions) == 7 + 33 * depth


def test_swidernet_drop_path_linear_schedule():
    model = backbones.SWideRNet(0.25, 0.25, 0.75,
                                drop_path_survival_rate=0.8,
                                drop_path_schedule="linear")
    rates = [sorted({b.survival_rate for b in _blocks(model, f"conv{s}_")})
             for s in range(3, 7)]
    np.testing.assert_allclose(np.ravel(rates), [0.95, 0.9, 0.85, 0.8])


def _trainable(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@pytest.mark.parametrize("name,expected", [("resnet50", 23_587_712),
                                           ("resnet101", 42_658_176)])
def test_resnet_parameters_equal_keras_applications(name, expected):
    with keras.StatelessScope():
        assert backbones.get_backbone(name).count_params() == expected


@pytest.mark.parametrize("variant,application", [
    ("small", keras.applications.MobileNetV3Small),
    ("large", keras.applications.MobileNetV3Large)])
def test_mobilenet_parameters_equal_keras_applications(variant, application):
    reference = application(input_shape=(65, 65, 3), include_top=False,
                            weights=None, include_preprocessing=False)
    model = backbones.MobileNetV3(variant, halve_last_block=False)
    model.build((None, None, None, 3))
    assert model.count_params() == reference.count_params()
    halved = backbones.MobileNetV3(variant)
    halved.build((None, None, None, 3))
    assert halved.count_params() < model.count_params()


def test_xception_71_minus_65_matches_paper_000_table_5():
    # 46.73M - 44.31M (same decoder, trainable parameters).
    with keras.StatelessScope():
        difference = (_trainable(backbones.get_backbone("xception71"))
                      - _trainable(backbones.get_backbone("xception65")))
    assert abs(difference / 1e6 - 2.42) <= 0.01


@pytest.fixture(scope="module")
def wide_block_params():
    """Trainable parameters of one non-first block of conv3..conv6 (w2 = 1),
    without and with SE and SAC."""
    def count(block, channels):
        block.build((None, None, None, channels))
        return _trainable(block)

    params = {}
    for use_se in (False, True):
        for stage, width in ((3, 256), (4, 512), (5, 1024)):
            params[stage, use_se, False] = count(
                wide_resnet.BasicBlock(width, use_se=use_se), width)
        for use_sac in (False, True):
            params[6, use_se, use_sac] = count(
                wide_resnet.WideBottleneck(512, use_se=use_se,
                                           use_sac=use_sac), 2048)
    return params


def _stage_blocks(depth):
    model = wide_resnet.SWideRNet(depth=depth)
    return {s: len(_blocks(model, f"conv{s}_")) for s in range(3, 7)}


def test_wide_resnet_sac_and_se_match_paper_004_table_3(wide_block_params):
    # Params (M): WR-41 147.32, + SAC 151.26, + SAC + SE 168.77. SAC is in
    # the three blocks of conv6, SE in every block of conv3..conv6.
    p = wide_block_params
    blocks = _stage_blocks(1)
    sac = blocks[6] * (p[6, False, True] - p[6, False, False])
    se = sum(blocks[s] * (p[s, True, s == 6] - p[s, False, s == 6])
             for s in blocks)
    assert abs(sac / 1e6 - (151.26 - 147.32)) <= 0.01
    assert abs(se / 1e6 - (168.77 - 151.26)) <= 0.01


def test_swidernet_depth_scaling_matches_paper_004_table_4(
        wide_block_params):
    # SWideRNet-(1, 1, l) params (M); the differences are backbone-only.
    table = {1: 168.77, 2: 302.33, 3: 435.90, 4: 569.46, 5: 703.03,
             5.5: 752.53, 6: 836.59}
    per_block = {s: wide_block_params[s, True, s == 6] for s in range(3, 7)}
    base = _stage_blocks(1)
    for depth, params in table.items():
        counts = _stage_blocks(depth)
        extra = sum((counts[s] - base[s]) * per_block[s] for s in per_block)
        assert abs(extra / 1e6 - (params - table[1])) <= 0.01, depth


def test_keras_file_round_trip(tmp_path):
    backbone = backbones.get_backbone(
        "swidernet", width1=0.25, width2=0.25, depth=0.35, output_stride=16,
        sac_stages=(5, 6), multi_grid=(2,), drop_path_survival_rate=0.8,
        drop_path_schedule="linear")
    rng = np.random.default_rng(1)
    for weight in backbone.weights:  # make switches and contexts matter
        if any(part in weight.path for part in ("switch", "context",
                                                "gamma")):
            weight.assign(rng.normal(1.0 if "gamma" in weight.path else 0.0,
                                     0.1, weight.shape).astype("float32"))
    expected = backbone(INPUT)
    path = tmp_path / "backbone.keras"
    backbone.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, backbones.SWideRNet)
    assert loaded.get_config() == backbone.get_config()
    got = loaded(INPUT)
    for key in KEYS:
        np.testing.assert_array_equal(np.asarray(got[key]),
                                      np.asarray(expected[key]))
    # Drop path is active in training only: its random masks differ between
    # calls. Two calls draw the same masks about 1 time in 10 here (5 blocks,
    # survival 0.8-0.95, 2 images); eight all alike, about 1 in 10,000.
    outputs = [np.asarray(loaded(INPUT, training=True)["res5"]) for _ in range(8)]
    assert any(not np.allclose(outputs[0], other) for other in outputs[1:])


def test_config_round_trip_mobilenet():
    backbone = backbones.get_backbone("mobilenet_v3_small", output_stride=16)
    clone = backbones.MobileNetV3.from_config(backbone.get_config())
    clone.build((None, None, None, 3))
    clone.set_weights(backbone.get_weights())
    expected, got = backbone(INPUT), clone(INPUT)
    for key in KEYS:
        np.testing.assert_array_equal(np.asarray(got[key]),
                                      np.asarray(expected[key]))


def test_a_registered_backbone_is_built_by_name(monkeypatch):
    from deeplab2.model.backbones import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    calls = []

    def constructor(**arguments):
        calls.append(arguments)
        return backbones.MobileNetV3(**arguments)

    backbones.register_backbone("my_net", constructor, fixed=dict(variant="small"))
    assert "my_net" in backbones.backbone_names()
    built = backbones.get_backbone("my_net", output_stride=16)
    assert calls == [dict(variant="small", output_stride=16, name="my_net")]
    assert built.feature_channels["res5"] == 288
    with pytest.raises(ValueError, match="does not support multi_grid"):
        backbones.get_backbone("my_net", multi_grid=(1, 2))
    with pytest.raises(ValueError, match="backbone 'my_net' is already registered"):
        backbones.register_backbone("my_net", constructor)


def test_resnet_takes_leaky_relu_and_other_backbones_refuse_an_activation():
    images = np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype("float32")
    keras.utils.set_random_seed(0)
    relu = backbones.get_backbone("resnet50", layout="deeplab2")
    keras.utils.set_random_seed(0)
    leaky = backbones.get_backbone("resnet50", layout="deeplab2", activation="leaky_relu")
    assert backbones.takes_activation("resnet50") and not backbones.takes_activation(
        "mobilenet_v3_small")
    # Same weights; ReLU features are >= 0, LeakyReLU(0.01) ones also negative, down
    # to a hundredth of the largest.
    assert [w.path for w in relu.weights] == [w.path for w in leaky.weights]
    relu_out, leaky_out = relu(images)["res5"].numpy(), leaky(images)["res5"].numpy()
    assert relu_out.min() >= 0 and leaky_out.min() < 0
    assert -leaky_out.min() <= 0.01 * leaky_out.max() + 1e-6
    clone = backbones.ResNet.from_config(leaky.get_config())
    assert clone.activation == "leaky_relu"
    with pytest.raises(ValueError, match="mobilenet_v3_small does not take an activation"):
        backbones.get_backbone("mobilenet_v3_small", activation="leaky_relu")
