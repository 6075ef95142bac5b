"""Runs an exported network file: TFLite with the LiteRT interpreter
(`ai-edge-litert`), ONNX with ONNX Runtime.

`open_network(path)` reads the file's `NetworkInfo` (a file this library did
not export is refused in one line), checks that the file's input and outputs
are those it describes, and returns an `ExportedNetwork`: called on float32
images `[batch, height, width, 3]` it returns the raw outputs by name, and
`predict_image` gives the SavedModel's predictions for one image
(deeplab2.export.tflite_postprocess).
"""
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from deeplab2.export import tflite_postprocess
from deeplab2.export.network import INPUT_KEY, NetworkFileError, NetworkInfo

TFLITE_SIGNATURE = "serving_default"


class ExportedNetwork:
    """A network file ready to run; `info` describes it."""

    def __init__(self, info: NetworkInfo, run):
        self.info = info
        self._run = run

    def __call__(self, images: np.ndarray) -> Dict[str, np.ndarray]:
        """Raw outputs of float32 images [batch, height, width, 3] of the input size."""
        images = np.asarray(images, np.float32)
        expected = (*self.info.input_size, 3)
        if images.ndim != 4 or images.shape[1:] != expected:
            raise ValueError(f"images must be [batch, {', '.join(map(str, expected))}] "
                             f"(the network's input size), got {list(images.shape)}.")
        return tflite_postprocess.check_outputs(self._run(images), self.info)

    def predict_image(self, image) -> Dict[str, np.ndarray]:
        """The predictions for one HxWx3 image (values in [0, 255])."""
        return tflite_postprocess.predict_image(self, self.info, image)


def open_network(path: str, num_threads: Optional[int] = None) -> ExportedNetwork:
    """The .tflite or .onnx file at `path` (exported by this library), ready to run."""
    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    info = tflite_postprocess.network_info(data, path)
    if info.file_format == "tflite":
        run, inputs, outputs = _litert(data, num_threads)
    else:
        run, inputs, outputs = _onnxruntime(data, num_threads)
    if inputs != [INPUT_KEY] or sorted(outputs) != sorted(info.outputs):
        raise NetworkFileError(
            f"{path}: its input {inputs} and outputs {sorted(outputs)} are not those its "
            f"deeplab2 metadata describes ({INPUT_KEY!r}; {sorted(info.outputs)}).")
    return ExportedNetwork(info, run)


def _litert(data: bytes, num_threads: Optional[int]):
    """(run, input names, output names) of a TFLite model in LiteRT."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data, num_threads=num_threads)
    signatures = interpreter.get_signature_list()
    if TFLITE_SIGNATURE not in signatures:
        return None, [], list(signatures)
    runner = interpreter.get_signature_runner(TFLITE_SIGNATURE)
    signature = signatures[TFLITE_SIGNATURE]
    return (lambda images: runner(**{INPUT_KEY: images}), list(signature["inputs"]),
            list(signature["outputs"]))


def _onnxruntime(data: bytes, num_threads: Optional[int]):
    """(run, input names, output names) of an ONNX model in ONNX Runtime."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if num_threads:
        options.intra_op_num_threads = num_threads
    session = onnxruntime.InferenceSession(data, options,
                                           providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]

    def run(images):
        return dict(zip(names, session.run(names, {INPUT_KEY: images})))
    return run, [i.name for i in session.get_inputs()], names
