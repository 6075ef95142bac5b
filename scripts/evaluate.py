"""Scores a model on TFRecords, or panoptic predictions stored in COCO format.

A model (everything from its model directory; test-time augmentation and
post-processing overrides as flags) on an evaluation split:
  python scripts/evaluate.py --model_dir=runs/quickstart/model \\
      --file_pattern='data/synthetic/val-*.tfrecord' --json_out=/tmp/metrics.json

Prediction files (PNG + JSON) against ground truth, as panopticapi's
`pq_compute` would score PQ (categories from the ground-truth JSON):
  python scripts/evaluate.py --gt_json=gt/panoptic_val.json --gt_dir=gt/panoptic_val \\
      --pred_json=pred/panoptic.json --pred_dir=pred/panoptic \\
      --json_out=/tmp/metrics.json --num_workers=2

Both print PQ / SQ / RQ (All, Things, Stuff), PQ-dagger and mIoU (and mask AP
for a model).
"""
import sys

from absl import app, flags

from deeplab2.inference.cli import define_model_flags, load_predictor_from_flags
from deeplab2.utils.console import configure_logging

define_model_flags()
_FILE_PATTERN = flags.DEFINE_string("file_pattern", None,
                                    "TFRecords to evaluate the model on (with --model_dir).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 1, "Images per step (with --model_dir).")
_CROP = flags.DEFINE_list("crop_size", None, "Height,width every image is padded to "
                          "(with --model_dir); default: the model's training crop.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where to write metrics-<step>.json, "
                                  "pictures-<step>/ and summaries (with --model_dir).")
_NUM_PICTURES = flags.DEFINE_integer("num_pictures", 8, "Prediction pictures written to "
                                     "--output_dir.")
_GT_JSON = flags.DEFINE_string("gt_json", None, "Ground-truth COCO panoptic JSON.")
_GT_DIR = flags.DEFINE_string("gt_dir", None, "Folder of the ground-truth PNGs.")
_PRED_JSON = flags.DEFINE_string("pred_json", None, "Predicted COCO panoptic JSON.")
_PRED_DIR = flags.DEFINE_string("pred_dir", None, "Folder of the predicted PNGs.")
_JSON_OUT = flags.DEFINE_string("json_out", None,
                                "Where to write the metrics as JSON (fractions).")
_NUM_WORKERS = flags.DEFINE_integer("num_workers", 1, "Worker threads scoring prediction "
                                    "files in parallel.")
_PER_CLASS = flags.DEFINE_bool("per_class", False, "Also print per-class rows.")


def _evaluate_model():
    from deeplab2.data.records import RecordFileError
    from deeplab2.evaluation.model_evaluation import Evaluator
    import tensorflow as tf

    if not _FILE_PATTERN.value:
        sys.exit("error: --file_pattern is required with --model_dir.")
    predictor, step, checkpoint = load_predictor_from_flags()
    crop = tuple(int(c) for c in _CROP.value) if _CROP.value else None
    evaluator = Evaluator(_FILE_PATTERN.value, batch_size=_BATCH_SIZE.value, crop_size=crop,
                          num_pictures=_NUM_PICTURES.value)
    print(f"Evaluating {checkpoint} (step {step}) on {_FILE_PATTERN.value}.")
    try:
        return evaluator.evaluate(predictor, tf.distribute.get_strategy(), step=step,
                                  output_dir=_OUTPUT_DIR.value)
    except (RecordFileError, ValueError) as error:
        sys.exit(f"error: {error}")


def _evaluate_files():
    from deeplab2.evaluation import coco_evaluation
    from deeplab2.evaluation.coco_format import FormatError

    missing = [name for name, flag in (("gt_json", _GT_JSON), ("gt_dir", _GT_DIR),
                                       ("pred_json", _PRED_JSON), ("pred_dir", _PRED_DIR))
               if not flag.value]
    if missing:
        sys.exit(f"error: give --model_dir and --file_pattern, or the prediction files: "
                 f"missing --{', --'.join(missing)}.")
    try:
        return coco_evaluation.evaluate_coco_panoptic(
            _GT_JSON.value, _GT_DIR.value, _PRED_JSON.value, _PRED_DIR.value,
            num_workers=_NUM_WORKERS.value, show_progress=True)
    except FormatError as e:
        sys.exit(f"error: {e}")


def main(argv):
    del argv  # unused
    configure_logging()
    from deeplab2.evaluation import coco_evaluation
    from deeplab2.utils.paths import OutputPathError, prepare_output_dir, prepare_output_file

    try:  # before minutes of evaluation
        if _JSON_OUT.value:
            prepare_output_file(_JSON_OUT.value, "--json_out")
        if _OUTPUT_DIR.value:
            prepare_output_dir(_OUTPUT_DIR.value, "--output_dir")
    except OutputPathError as error:
        sys.exit(f"error: {error}")
    if flags.FLAGS.model_dir:
        result = _evaluate_model()  # prints its table
        if _PER_CLASS.value:
            print(coco_evaluation.format_table(result, per_class=True))
    else:
        result = _evaluate_files()
        print(coco_evaluation.format_table(result, per_class=_PER_CLASS.value))
    if _JSON_OUT.value:
        coco_evaluation.write_json(result, _JSON_OUT.value)
        print(f"Wrote {_JSON_OUT.value}")


if __name__ == "__main__":
    app.run(main)
