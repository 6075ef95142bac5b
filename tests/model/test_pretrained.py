"""keras.applications weight mapping (offline).

The Keras applications are built with `weights=None` and random weights and
batch-norm statistics (calibrated on a random batch so that deep features
still depend on the input); after copying, our features must equal theirs.
"""
import keras
import numpy as np
import pytest

from deeplab2.model import backbones
from deeplab2.model.backbones import pretrained

SIZE = 65
RNG = np.random.default_rng(0)
IMAGE = RNG.uniform(-1, 1, (2, SIZE, SIZE, 3)).astype("float32")


def _random_application(name):
    application = pretrained.keras_application(name, weights=None,
                                               input_shape=(SIZE, SIZE, 3))
    for weight in application.weights:
        kind = weight.path.split("/")[-1]
        if kind in ("gamma", "moving_variance"):
            weight.assign(RNG.uniform(0.5, 1.5, weight.shape))
        elif kind in ("beta", "moving_mean", "bias"):
            weight.assign(RNG.normal(0.0, 0.1, weight.shape))
    batch_norms = [layer for layer in application.layers
                   if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in batch_norms:  # moving statistics <- one batch's statistics
        layer.momentum = 0.0
    application(RNG.uniform(-1, 1, (4, SIZE, SIZE, 3)).astype("float32"),
                training=True)
    return application


def _assert_close(got, expected, tolerance=1e-5):
    expected = np.asarray(expected)
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=0,
                               atol=tolerance * scale)


def _hard_swish(x):
    return x * np.clip(x + 3.0, 0.0, 6.0) / 6.0


def _keras_features(application, outputs):
    """Runs `application` up to the named layers (and post-activations)."""
    model = keras.Model(application.input, {
        key: application.get_layer(name).output
        for key, (name, _) in outputs.items()})
    values = model(IMAGE)
    return {key: activation(np.asarray(values[key]))
            for key, (_, activation) in outputs.items()}


def test_resnet50_features_equal_keras_application():
    application = _random_application("resnet50")
    backbone = backbones.get_backbone("resnet50")
    report = pretrained.copy_keras_application_weights(backbone, application)
    assert not report.skipped and not report.not_loaded
    identity = np.asarray
    expected = _keras_features(application, {
        "res2": ("conv2_block3_out", identity),
        "res3": ("conv3_block4_out", identity),
        "res4": ("conv4_block6_out", identity),
        "res5": ("conv5_block3_out", identity)})
    features = backbone(IMAGE)
    for key, value in expected.items():
        assert np.abs(value).max() > 0.1
        # Our inference folds each batch norm into its convolution: the same
        # function in another float32 order, whose round-off grows with depth
        # (about 1.5e-4 of the scale after the 50 layers of res5).
        _assert_close(features[key], value, 1e-5 if key in ("res2", "res3") else 3e-4)


def test_caffe_preprocessing_folds_into_the_first_convolution():
    application = _random_application("resnet50")
    backbone = backbones.get_backbone("resnet50")
    pretrained.copy_keras_application_weights(
        backbone, application, fold_caffe_preprocessing=True)
    pixels = RNG.uniform(0, 255, (1, SIZE, SIZE, 3)).astype("float32")
    caffe = keras.applications.resnet.preprocess_input(pixels.copy())
    reference = keras.Model(application.input,
                            application.get_layer("conv1_relu").output)
    expected = np.asarray(reference(caffe))
    got = np.asarray(backbone.conv1(pixels / 127.5 - 1.0))
    # Equal away from the border (zero padding means another pixel value).
    _assert_close(got[:, 2:-2, 2:-2], expected[:, 2:-2, 2:-2])


# Depthwise end points: (keras block, activation) per feature.
MOBILENET_ENDPOINTS = {
    "mobilenet_v3_large": {"res2": (2, "relu"), "res3": (5, "relu"),
                           "res4": (11, "hard_swish")},
    "mobilenet_v3_small": {"res2": (0, "relu"), "res3": (2, "relu"),
                           "res4": (7, "hard_swish")},
}


@pytest.mark.parametrize("halve_last_block", [False, True])
@pytest.mark.parametrize("name", sorted(MOBILENET_ENDPOINTS))
def test_mobilenet_features_equal_keras_application(name, halve_last_block):
    application = _random_application(name)
    backbone = backbones.get_backbone(name, halve_last_block=halve_last_block)
    report = pretrained.copy_keras_application_weights(backbone, application)
    activations = {"relu": lambda x: np.maximum(x, 0.0),
                   "hard_swish": _hard_swish}
    outputs = {}
    for key, (block, activation) in MOBILENET_ENDPOINTS[name].items():
        prefix = f"expanded_conv_{block}_" if block else "expanded_conv_"
        outputs[key] = (prefix + "depthwise_bn", activations[activation])
    outputs["res5"] = (application.layers[-1].name, np.asarray)
    expected = _keras_features(application, outputs)
    features = backbone(IMAGE)
    last_blocks = {"mobilenet_v3_large": (12, 13, 14),
                   "mobilenet_v3_small": (8, 9, 10)}[name]
    if not halve_last_block:
        assert not report.skipped and not report.not_loaded
    else:
        # Only the halved stride-32 block and the final conv are skipped.
        skipped = {layer for layer, _ in report.skipped}
        assert skipped and all(
            layer.startswith(tuple(f"expanded_conv_{b}_"
                                   for b in last_blocks))
            or layer.startswith("conv_1") for layer in skipped)
        assert all(path.split("/")[1].startswith(
            tuple(f"block{b}" for b in last_blocks) + ("conv_1",))
            for path in report.not_loaded)
        del expected["res5"]
    for key, value in expected.items():
        assert np.abs(value).max() > 0.1
        _assert_close(features[key], value)


def test_imagenet_weights_load_through_keras_applications_with_the_epsilon_clip(
        monkeypatch, tmp_path):
    """get_backbone(weights="imagenet") builds the real Keras application, which
    loads its weight file (here a random one, served where the download would
    be), and copies it; moving variances smaller than the epsilon difference
    (ours 1e-3, Keras ResNets 1.001e-5) are clipped to 0."""
    import keras.src.utils.file_utils

    application = _random_application("resnet50")
    source_bn = application.get_layer("conv2_block1_1_bn")
    variance = RNG.uniform(0.5, 1.5, source_bn.moving_variance.shape).astype("float32")
    variance[:4] = [0.0, 1e-4, 5e-4, 9e-4]  # below 1e-3 - 1.001e-5
    source_bn.moving_variance.assign(variance)
    weight_file = tmp_path / "resnet50_imagenet.weights.h5"
    application.save_weights(str(weight_file))
    downloads = []

    def serve_local_file(fname, origin=None, **kwargs):
        downloads.append(fname)
        return str(weight_file)

    monkeypatch.setattr(keras.src.utils.file_utils, "get_file", serve_local_file)
    backbone = backbones.get_backbone("resnet50", weights="imagenet")
    assert downloads and downloads[0].startswith("resnet50")
    block = backbone.get_layer("conv2_block1")
    loaded = np.asarray(block.conv1.bn.moving_variance)
    np.testing.assert_allclose(loaded, np.maximum(variance + 1.001e-5 - 1e-3, 0.0),
                               rtol=1e-6, atol=0)
    assert (loaded[:4] == 0).all() and (loaded[4:] > 0.4).all()
    np.testing.assert_array_equal(np.asarray(block.conv2.conv.kernel),
                                  np.asarray(application.get_layer("conv2_block1_2_conv").kernel))
