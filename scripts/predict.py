"""Writes a checkpoint's panoptic predictions in the official formats.

The model, dataset, evaluation crop and post-processing / TTA options
(`build_predictor.*`) come from the Gin config, as for `trainer.py`.

Example:
  python scripts/predict.py --gin_config=configs/cityscapes/resnet50_os32.gin \
      --checkpoint=runs/cityscapes --output_dir=/tmp/pred --format=both \
      --num_pictures=4
  # COCO: /tmp/pred/panoptic_val.json + panoptic_val/ (panopticapi pq_compute)
  # Cityscapes: /tmp/pred/cityscapes_panoptic_val.json + cityscapes_panoptic_val/
  #   (CITYSCAPES_RESULTS=/tmp/pred csEvalPanopticSemanticLabeling)
"""
import os
import sys

from absl import app, flags

from deeplab2.evaluation.prediction_writer import FORMATS
# Defines --gin_config and --gin_bindings (and the trainer's flags, unused here).
from deeplab2.training.config import define_gin_flags, parse_gin_flags_or_exit

define_gin_flags()

_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Checkpoint prefix, or a folder (its latest checkpoint).",
    required=True)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where to write the predictions.",
                                  required=True)
_FORMAT = flags.DEFINE_enum("format", "coco", FORMATS + ("both",), "Output format(s).")
_FILE_PATTERN = flags.DEFINE_string(
    "file_pattern", None, "TFRecords to predict (default: Experiment.eval_file_pattern).")
_SPLIT = flags.DEFINE_string("split_name", "val", "Split name in the output file names.")
_NUM_PICTURES = flags.DEFINE_integer(
    "num_pictures", 0, "Pictures of the first predictions, in output_dir/pictures.")


def main(argv):
    del argv  # unused
    parse_gin_flags_or_exit()

    from deeplab2.data.pipeline import build_dataset
    from deeplab2.evaluation.prediction_writer import PredictionWriter, predict_and_write
    from deeplab2.inference import build_predictor
    from deeplab2.training.experiment import Experiment
    from deeplab2.training.runner import MissingDataError, check_files

    experiment = Experiment(_OUTPUT_DIR.value)
    experiment.setup_runtime()
    pattern = _FILE_PATTERN.value or experiment.eval_file_pattern
    try:
        check_files(pattern, "--file_pattern (default Experiment.eval_file_pattern)")
        model, step, checkpoint = experiment.load_model(_CHECKPOINT.value)
    except (MissingDataError, FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    predictor = build_predictor(model, experiment.info)
    batches = build_dataset(pattern, experiment.dataset_name, False,
                            experiment.eval_crop_size, experiment.eval_batch_size,
                            seed=experiment.seed)
    formats = FORMATS if _FORMAT.value == "both" else (_FORMAT.value,)
    writer = PredictionWriter(_OUTPUT_DIR.value, experiment.info, formats, _SPLIT.value)
    count = predict_and_write(
        predictor.batch_function(), batches, writer,
        picture_dir=os.path.join(_OUTPUT_DIR.value, "pictures"),
        num_pictures=_NUM_PICTURES.value)
    paths = writer.close()
    print(f"Predicted {count} images of {pattern} with {checkpoint} (step "
          f"{step}); wrote {', '.join(paths.values())}")


if __name__ == "__main__":
    app.run(main)
