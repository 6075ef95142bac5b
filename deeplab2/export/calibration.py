"""Representative images for int8 post-training quantization, read from TFRecords.

The first `steps` images of the records (in file order) are prepared as the
exported network sees them on the host: shrunk to fit its input size if
larger, padded with the model's pad value (`Predictor.prepare_image` with
`fit_size`, as deeplab2.export.tflite_postprocess prepares them).
"""
import re
from typing import Callable, Iterator, Sequence, Union

import keras
import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2.data import records
from deeplab2.data.tfrecord import decode_example
from deeplab2.export.network import check_input_size
from deeplab2.inference import Predictor


def calibration_images(file_pattern: Union[str, Sequence[str]], model: keras.Model,
                       input_size: Sequence[int], steps: int
                       ) -> Callable[[], Iterator[np.ndarray]]:
    """A function returning the calibration images ([1, height, width, 3]
    float32) of the records matching `file_pattern`; a pattern that matches no
    file is an error now (RecordFileError), not when the converter calls it."""
    if steps < 1:
        raise ValueError(f"calibration_steps must be >= 1, got {steps}.")
    files = records.list_files(file_pattern, "calibration pattern")
    predictor = Predictor(model, fit_size=check_input_size(model.model_config, input_size))

    def images():
        try:
            for serialized in tf.data.TFRecordDataset(files).take(steps):
                image = decode_example(serialized)[common.IMAGE]
                yield predictor.prepare_image(image)[0].numpy()
        except tf.errors.OpError as error:  # e.g. a file that is no TFRecord
            reason = re.sub(r"\{\{[^}]*\}\}\s*|\s*\[Op:.*$", "",
                            error.message.splitlines()[0])
            raise records.RecordFileError(
                f"calibration pattern {file_pattern!r}: {reason}") from None
    return images
