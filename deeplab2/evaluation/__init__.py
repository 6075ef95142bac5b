"""Panoptic evaluation, streamed over a dataset: PQ / SQ / RQ and PQ-dagger
(panoptic_quality), mIoU (miou), COCO mask AP (instance_ap), and the COCO
panoptic file format (coco_format, coco_evaluation).

The public names are loaded on first use, so that importing one metric does
not import the others' dependencies (e.g. pycocotools).
"""
import importlib

_PUBLIC = {
    "PanopticEvaluator": "deeplab2.evaluation.evaluator",
    "PanopticQuality": "deeplab2.evaluation.panoptic_quality",
    "ConfusionMatrix": "deeplab2.evaluation.miou",
    "MaskAP": "deeplab2.evaluation.instance_ap",
    "evaluate_coco_panoptic": "deeplab2.evaluation.coco_evaluation",
    "format_table": "deeplab2.evaluation.coco_evaluation",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError(
            f"module 'deeplab2.evaluation' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
