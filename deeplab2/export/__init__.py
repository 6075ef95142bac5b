"""Export of trained models: a SavedModel serving one image of any size."""
from deeplab2.export.saved_model import export_saved_model, serving_function

__all__ = ["export_saved_model", "serving_function"]
