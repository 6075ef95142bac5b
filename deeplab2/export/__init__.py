"""Export of trained models: a SavedModel serving one image of any size, and the
network alone at a fixed size as TFLite or ONNX, post-processed on the host
(`tflite_postprocess`, run with `runtimes.open_network`)."""
from deeplab2.export.saved_model import export_saved_model, serving_function

__all__ = ["export_saved_model", "serving_function"]
