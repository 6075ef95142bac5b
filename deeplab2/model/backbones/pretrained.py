"""Pretrained weights: keras.applications ImageNet weights, own checkpoints.

`load_imagenet_weights` copies `keras.applications` weights (ResNet50/101,
MobileNetV3Small/Large) into our backbones by layer name. Batch-norm moving
variances are shifted by the epsilon difference (Keras ResNets use 1.001e-5,
we use 1e-3), which keeps inference outputs identical. Keras ResNets expect
"caffe" inputs (BGR, mean-subtracted, 0..255) while our backbones take RGB
`x / 127.5 - 1`; `fold_caffe_preprocessing` rewrites the first convolution so
that the two agree (exactly, except near the image border, where the zero
padding stands for a different pixel value). Layers whose shapes differ (the
halved last block of MobileNetV3) are skipped and listed.
"""
import collections
import re

import keras
import numpy as np

KERAS_APPLICATIONS = {
    "resnet50": "ResNet50",
    "resnet101": "ResNet101",
    "mobilenet_v3_small": "MobileNetV3Small",
    "mobilenet_v3_large": "MobileNetV3Large",
}
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

Report = collections.namedtuple("Report", ["loaded", "skipped", "not_loaded"])

_STEMS_AND_HEADS = {"conv1_conv": "conv1/conv", "conv1_bn": "conv1/bn",
                    "conv": "conv/conv", "conv_bn": "conv/bn",
                    "conv_1": "conv_1/conv", "conv_1_bn": "conv_1/bn"}
_RESNET_BLOCK = re.compile(r"(conv\d_block\d+)_(\d)_(conv|bn)")
_RESNET_BRANCH = {"0": "shortcut", "1": "conv1", "2": "conv2", "3": "conv3"}
_MOBILENET_BLOCK = re.compile(
    r"expanded_conv_(?:(\d+)_)?(expand|depthwise|project|"
    r"squeeze_excite_conv_1|squeeze_excite_conv)(_bn)?")
_MOBILENET_PART = {"expand": "expand_conv", "depthwise": "depthwise",
                   "project": "project", "squeeze_excite_conv": "se/reduce",
                   "squeeze_excite_conv_1": "se/expand"}


def keras_application(name, weights="imagenet", input_shape=None):
    """The keras.applications model matching backbone `name`, without top."""
    if name not in KERAS_APPLICATIONS:
        raise ValueError(f"no keras.applications weights for {name!r}; "
                         f"available: {', '.join(KERAS_APPLICATIONS)}")
    options = dict(include_top=False, weights=weights,
                   input_shape=input_shape)
    if name.startswith("mobilenet"):
        options["include_preprocessing"] = False
    return getattr(keras.applications, KERAS_APPLICATIONS[name])(**options)


def _target_path(layer_name):
    """Our sublayer path (e.g. "conv2_block1/shortcut/bn") of a Keras layer."""
    if layer_name in _STEMS_AND_HEADS:
        return _STEMS_AND_HEADS[layer_name]
    match = _RESNET_BLOCK.fullmatch(layer_name)
    if match:
        block, branch, kind = match.groups()
        return f"{block}/{_RESNET_BRANCH[branch]}/{kind}"
    match = _MOBILENET_BLOCK.fullmatch(layer_name)
    if match:
        index, part, bn = match.groups()
        path = f"block{index or 0}/{_MOBILENET_PART[part]}"
        if part.startswith("squeeze_excite"):
            return path
        return path + ("/bn" if bn else "/conv")
    return None


def _resolve(backbone, path):
    layer = backbone
    for name in path.split("/"):
        layer = getattr(layer, name, None)
        if layer is None:
            return None
    return layer


def _fold_caffe(kernel, bias):
    """First-conv weights for RGB `x/127.5-1` inputs instead of caffe ones."""
    offset = 127.5 - np.asarray(CAFFE_MEAN_BGR, kernel.dtype)
    bias = bias + np.einsum("hwco,c->o", kernel, offset)
    return 127.5 * kernel[:, :, ::-1, :], bias


def copy_keras_application_weights(backbone, application,
                                   fold_caffe_preprocessing=False):
    """Copies `application`'s weights into `backbone` by layer name.

    Returns a `Report` of loaded and skipped Keras layers (with the reason)
    and of our variables left untouched; prints the skipped ones.
    """
    loaded, skipped, touched = [], [], set()
    for layer in application.layers:
        values = layer.get_weights()
        if not values:
            continue
        path = _target_path(layer.name)
        target = _resolve(backbone, path) if path else None
        if target is None:
            skipped.append((layer.name, "no matching layer"))
            continue
        if fold_caffe_preprocessing and layer.name == "conv1_conv":
            values = list(_fold_caffe(*values))
        if isinstance(layer, keras.layers.BatchNormalization):
            values[3] = np.maximum(
                values[3] + layer.epsilon - target.epsilon, 0.0)
        shapes = [tuple(v.shape) for v in target.weights]
        if shapes != [v.shape for v in values]:
            skipped.append((layer.name, f"shapes {[v.shape for v in values]}"
                            f" != {shapes}"))
            continue
        target.set_weights(values)
        touched.update(id(v) for v in target.weights)
        loaded.append(layer.name)
    not_loaded = [v.path for v in backbone.weights if id(v) not in touched]
    for name, reason in skipped:
        print(f"not loaded from {application.name}: {name} ({reason})")
    return Report(loaded, skipped, not_loaded)


def load_imagenet_weights(backbone, name):
    """Downloads and copies the keras.applications weights for `name`."""
    application = keras_application(name)
    return copy_keras_application_weights(
        backbone, application,
        fold_caffe_preprocessing=name.startswith("resnet"))
