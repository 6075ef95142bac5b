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

`load_checkpoint` restores part of a `tf.train.Checkpoint` into a model
(e.g. a backbone out of a whole-model checkpoint), skipping and listing
variables whose shapes differ.
"""
import collections
import re

import keras
import numpy as np
import tensorflow as tf

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


def _escape(name):
    """Escapes an object-graph edge name as TensorFlow checkpoints do."""
    return name.replace(".", "..").replace("/", ".S")


def checkpoint_variables(root, prefix):
    """{checkpoint key: variable} of `root` saved under object path `prefix`.

    Mirrors `tf.train.Checkpoint`'s naming: breadth-first over trackable
    children, the first path to an object names it.
    """
    keys, seen = {}, {id(root)}
    queue = collections.deque([(root, prefix)])
    while queue:
        parent, path = queue.popleft()
        for name, child in tf.train.TrackableView.children(parent).items():
            if id(child) in seen:
                continue
            seen.add(id(child))
            child_path = f"{path}/{_escape(name)}"
            if isinstance(child, (keras.Variable, tf.Variable)):
                keys[child_path + "/.ATTRIBUTES/VARIABLE_VALUE"] = child
            else:
                queue.append((child, child_path))
    return keys


def load_checkpoint(model, path, prefix="model", skip_mismatch=True):
    """Restores `model`'s variables found in the checkpoint at `path`.

    Args:
        model: a built Keras model or layer.
        path: checkpoint prefix or directory (latest checkpoint).
        prefix: object path of `model` in the checkpoint: "model" for
            `tf.train.Checkpoint(model=model)`, "model/backbone" for the
            backbone attribute of a checkpointed model.
        skip_mismatch: skip (and list) variables of another shape instead of
            raising.

    Returns:
        A `Report`: loaded keys, skipped `(key, reason)` pairs, and keys of
        our variables absent from the checkpoint.
    """
    if tf.io.gfile.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise ValueError(f"no checkpoint found in directory {path}")
        path = latest
    reader = tf.train.load_checkpoint(path)
    shapes = reader.get_variable_to_shape_map()
    loaded, skipped, missing = [], [], []
    for key, variable in checkpoint_variables(model, prefix).items():
        if key not in shapes:
            missing.append(key)
            continue
        if tuple(shapes[key]) != tuple(variable.shape):
            reason = f"shape {tuple(shapes[key])} != {tuple(variable.shape)}"
            if not skip_mismatch:
                raise ValueError(f"{key}: {reason}")
            skipped.append((key, reason))
            continue
        variable.assign(reader.get_tensor(key))
        loaded.append(key)
    for key, reason in skipped:
        print(f"not restored: {key} ({reason})")
    return Report(loaded, skipped, missing)
