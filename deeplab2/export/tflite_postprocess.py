"""Host side of an exported network (TFLite or ONNX): image in, predictions out.

The TFLite and ONNX files hold the network only (deeplab2.export.network);
this module does on the host what the SavedModel does inside: it pads an
image to the network's input size (shrinking it first when it is larger, as
`Predictor(fit_size=...)`), and runs the family's TensorFlow post-processing
eagerly on the network's raw outputs, cropping the maps back to the image.
It runs a deeplab2 `Predictor` whose network is the file's (upsampled as
the model does, for a family whose network file stops before its
upsampling), so that the predictions are computed by
the same code as the SavedModel's (for an image no larger than the input
size, the same maps).

    info = tflite_postprocess.read_network_info("model.tflite")
    images = tflite_postprocess.prepare_image(image, info)  # [1, H, W, 3] float32
    raw = ...  # the network run on `images` (LiteRT, ONNX Runtime), by output name
    predictions = tflite_postprocess.postprocess(raw, info, image.shape[:2])

or, with the runners of deeplab2.export.runtimes,
`open_network("model.tflite").predict_image(image)`.

Predictions (numpy) are those of the SavedModel's signature: `panoptic`,
`semantic`, `instance` [height, width] at the image's size and the instance
tables (plus the family's `instance_outputs`, e.g. Panoptic FPN's `boxes`).
"""
from typing import Callable, Dict, Mapping, Sequence

import numpy as np
import tensorflow as tf

from deeplab2.export import onnx as onnx_export
from deeplab2.export import tflite as tflite_export
from deeplab2.export.network import NetworkFileError, NetworkInfo
from deeplab2.inference import Predictor

# A run of the network: float32 images [batch, height, width, 3] -> raw outputs.
RunNetwork = Callable[[np.ndarray], Mapping[str, np.ndarray]]


def read_network_info(path: str) -> NetworkInfo:
    """The `NetworkInfo` a .tflite or .onnx file exported by this library
    carries; a one-line NetworkFileError for any other file."""
    with tf.io.gfile.GFile(path, "rb") as f:
        return network_info(f.read(), path)


def network_info(data: bytes, source: str) -> NetworkInfo:
    """`read_network_info` of the bytes of the file `source`."""
    if tflite_export.is_tflite(data):
        return tflite_export.read_info(data, source)
    return onnx_export.read_info(data, source)


def prepare_image(image, info: NetworkInfo) -> np.ndarray:
    """One HxWx3 image (values in [0, 255]) -> the network's input
    [1, height, width, 3] float32: shrunk to fit if larger (aspect ratio
    kept), padded at the bottom and right with the model's pad value."""
    images, _ = _predictor(info, None).prepare_image(tf.convert_to_tensor(image))
    return images.numpy()


def postprocess(raw_outputs: Mapping[str, np.ndarray], info: NetworkInfo,
                image_size: Sequence[int]) -> Dict[str, np.ndarray]:
    """The predictions for an image of `image_size` (height, width) from the
    raw outputs of the network run on its `prepare_image` (batch of one)."""
    raw = check_outputs(raw_outputs, info)
    batch_size = next(iter(raw.values())).shape[0]
    if batch_size != 1:
        raise ValueError("postprocess takes the outputs of one image (batch size 1), got "
                         f"batch size {batch_size}.")
    # Only the image's size matters here: the stand-in model ignores its input.
    size_only = tf.zeros([int(image_size[0]), int(image_size[1]), 3], tf.uint8)
    return _numpy(_predictor(info, lambda images: raw).predict_image(size_only))


def predict_image(run: RunNetwork, info: NetworkInfo, image) -> Dict[str, np.ndarray]:
    """The predictions for one HxWx3 image, the network run by `run`."""
    predictor = _predictor(info, lambda images: check_outputs(run(images), info))
    return _numpy(predictor.predict_image(tf.convert_to_tensor(image)))


def check_outputs(raw_outputs: Mapping[str, np.ndarray], info: NetworkInfo
                  ) -> Dict[str, np.ndarray]:
    """The raw outputs as arrays if they are those `info` describes
    (names and per-image shapes), else a one-line NetworkFileError."""
    if set(raw_outputs) != set(info.outputs):
        raise NetworkFileError(
            f"the outputs {sorted(raw_outputs)} are not those of the exported "
            f"{info.config.meta_architecture} network ({sorted(info.outputs)}): "
            "a file of another model?")
    arrays = {key: np.asarray(value) for key, value in raw_outputs.items()}
    for key, shape in info.outputs.items():
        actual = arrays[key].shape[1:]
        if len(actual) != len(shape) or any(d is not None and d != a
                                            for d, a in zip(shape, actual)):
            raise NetworkFileError(
                f"output {key} has shape {list(arrays[key].shape)}, the exported "
                f"{info.config.meta_architecture} network's is [batch, "
                f"{', '.join(str(d) for d in shape)}]: a file of another model?")
    return arrays


class _NetworkStandIn:
    """What a Predictor needs of a model besides its network: its config and a name."""

    name = "exported_network"

    def __init__(self, info: NetworkInfo):
        self.model_config = info.config


def _predictor(info: NetworkInfo, run: RunNetwork) -> Predictor:
    def network(images: tf.Tensor) -> Dict[str, tf.Tensor]:
        return {key: tf.constant(value) for key, value in run(images.numpy()).items()}

    return Predictor(_NetworkStandIn(info), fit_size=info.input_size, network=network)


def _numpy(predictions: Mapping[str, tf.Tensor]) -> Dict[str, np.ndarray]:
    return {key: value.numpy() for key, value in predictions.items()}
