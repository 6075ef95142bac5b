"""Post-processing of model outputs into semantic, instance and panoptic predictions."""
from deeplab2.model.panoptic_deeplab.postprocess.panoptic_deeplab import panoptic_deeplab

__all__ = ["panoptic_deeplab"]
