"""Export of trained models: a SavedModel serving one image of any size."""
from deeplab2.export.saved_model import (ExportModule, export_saved_model,
                                         predict_image, restore_predictor)

__all__ = ["ExportModule", "export_saved_model", "predict_image", "restore_predictor"]
