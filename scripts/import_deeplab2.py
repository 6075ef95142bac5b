"""Imports a google-research/deeplab2 Panoptic-DeepLab checkpoint as a model directory.

  python scripts/import_deeplab2.py --config mobilenet_v3_small_os16 \
      --checkpoint ~/Downloads/ckpt-60000 --output_dir models/mnv3s_os16

--config names one of deeplab2's configs (deeplab2/configs/deeplab2/, e.g.
resnet50_os32, swidernet_sac_1_1_4.5_os16, or coco/resnet50_os32). Training
checkpoints (with optimizer slots) and exported ones both work; nothing of
deeplab2 is needed. Every variable must map, with its shape, or nothing is
written: the error lists what did not match. The model directory (checkpoint
+ model_config.json) works with deeplab2.load_model, scripts/predict.py,
scripts/evaluate.py, scripts/export_model.py and as trainer model_dir (to
fine-tune) or Trainer.init_checkpoint.
"""
import argparse
import sys


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True,
                        help="deeplab2 checkpoint prefix (…/ckpt-60000) or its folder")
    parser.add_argument("--config", required=True, help="deeplab2 config name")
    parser.add_argument("--output_dir", required=True, help="new model directory")
    parser.add_argument("--dataset", help="label space, if not the config's: a name (e.g. "
                        "coco) or the path of a .json dataset descriptor")
    parser.add_argument("--num_classes", type=int,
                        help="expected class count (checked against checkpoint and dataset)")
    parser.add_argument("--option", action="append", default=[],
                        help="override an architecture option, key=value (repeatable)")
    return parser.parse_args(argv)


def import_deeplab2(checkpoint, config_name, output_dir, dataset=None, num_classes=None,
                   options=None):
    """Builds the config's model, loads the checkpoint into it (all or nothing)
    and writes the model directory; returns (LoadReport, checkpoint path)."""
    from deeplab2.data.dataset_info import resolve_dataset
    from deeplab2.model import build_model, checkpoints
    from deeplab2.model.model_dir import write_model_dir
    from deeplab2.model.panoptic_deeplab import deeplab2_import
    from deeplab2.training import config

    model_options = config.model_options(config.deeplab2_config_file(config_name))
    model_options.update(options or {})
    if dataset:  # another label space: its own post-processing defaults
        model_options.update(dataset=dataset, postprocess=None)
    info = resolve_dataset(model_options["dataset"])
    predicted = deeplab2_import.checkpoint_num_classes(checkpoint)  # also checks it opens
    for what, count in (("the checkpoint", predicted), ("--num_classes", num_classes)):
        if count is not None and count != info.num_classes:
            raise checkpoints.CheckpointError(
                f"{what} predicts {count} classes but dataset {info.name!r} has "
                f"{info.num_classes}; pass --dataset with a label space of {count} classes.")
    model = build_model(**model_options)
    report = deeplab2_import.load_deeplab2_checkpoint(model, checkpoint)
    path = write_model_dir(model, output_dir, extra_files={
        "IMPORTED_FROM": f"deeplab2 config {config_name}\n{report.details()}\n"})
    return report, path


def main(argv=None) -> int:
    args = parse_args(argv)
    from deeplab2.data.dataset_info import UnknownDatasetError
    from deeplab2.inference.loading import parse_overrides
    from deeplab2.model import checkpoints
    from deeplab2.model.model_dir import ModelDirError
    from deeplab2.training.config import ConfigError

    try:
        report, path = import_deeplab2(
            args.checkpoint, args.config, args.output_dir, dataset=args.dataset,
            num_classes=args.num_classes, options=parse_overrides(args.option))
    except (checkpoints.CheckpointError, ModelDirError, ConfigError, ValueError,
            UnknownDatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(report.summary())
    print(f"wrote {path} and {args.output_dir}/model_config.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
