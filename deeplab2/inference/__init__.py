"""Inference: model outputs (optionally test-time augmented) -> post-processed
panoptic predictions; shared by evaluation, pictures and export."""
from deeplab2.inference.loading import load_predictor
from deeplab2.inference.predictor import Predictor, build_predictor
