"""Pictures of labels and predictions, with numpy and Pillow only.

TFRecord reading lives in `deeplab2.vis.records`, which is not imported here so
that drawing does not pull in TensorFlow.
"""
from deeplab2.vis.boxes import draw_boxes
from deeplab2.vis.colormaps import colorize_panoptic, colorize_semantic
from deeplab2.vis.fields import colorize_heatmap, colorize_offsets
from deeplab2.vis.layout import overlay, save_png, side_by_side
from deeplab2.vis.panels import render_panels

__all__ = [
    "colorize_heatmap",
    "colorize_offsets",
    "colorize_panoptic",
    "colorize_semantic",
    "draw_boxes",
    "overlay",
    "render_panels",
    "save_png",
    "side_by_side",
]
