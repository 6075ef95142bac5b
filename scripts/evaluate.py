"""Scores panoptic predictions stored in COCO panoptic format (PNG + JSON).

Prints PQ / SQ / RQ (All, Things, Stuff), PQ-dagger and mIoU, as panopticapi's
`pq_compute` would for PQ; categories come from the ground-truth JSON.

Example:
  python scripts/evaluate.py --gt_json=gt/panoptic_val.json --gt_dir=gt/panoptic_val \
      --pred_json=pred/panoptic.json --pred_dir=pred/panoptic \
      --json_out=/tmp/metrics.json --num_workers=2
"""
import sys

from absl import app, flags

from deeplab2.evaluation import coco_evaluation
from deeplab2.evaluation.coco_format import FormatError

_GT_JSON = flags.DEFINE_string("gt_json", None, "Ground-truth COCO panoptic JSON.",
                               required=True)
_GT_DIR = flags.DEFINE_string("gt_dir", None, "Folder of the ground-truth PNGs.",
                              required=True)
_PRED_JSON = flags.DEFINE_string("pred_json", None, "Predicted COCO panoptic JSON.",
                                 required=True)
_PRED_DIR = flags.DEFINE_string("pred_dir", None, "Folder of the predicted PNGs.",
                                required=True)
_JSON_OUT = flags.DEFINE_string("json_out", None,
                                "Where to write the metrics as JSON (fractions).")
_NUM_WORKERS = flags.DEFINE_integer("num_workers", 1, "Worker threads scoring images in parallel.")
_PER_CLASS = flags.DEFINE_bool("per_class", False, "Also print per-class rows.")


def main(argv):
    del argv  # unused
    try:
        result = coco_evaluation.evaluate_coco_panoptic(
            _GT_JSON.value, _GT_DIR.value, _PRED_JSON.value, _PRED_DIR.value,
            num_workers=_NUM_WORKERS.value, show_progress=True)
    except FormatError as e:
        sys.exit(f"error: {e}")
    print(coco_evaluation.format_table(result, per_class=_PER_CLASS.value))
    if _JSON_OUT.value:
        coco_evaluation.write_json(result, _JSON_OUT.value)
        print(f"Wrote {_JSON_OUT.value}")


if __name__ == "__main__":
    app.run(main)
