"""Prints parameters and multiply-adds of a model of any registered meta-architecture.

Counted from the traced graph without running it (see deeplab2.model.profile:
convolutions and matrix products only, like the papers' tables).

Example:
  python scripts/profile_model.py --backbone resnet50 --input_size 1025 2049 \\
      --num_classes 19 --output_stride 32 --json
  python scripts/profile_model.py --meta_architecture panoptic_deeplab \\
      --dataset cityscapes --backbone xception71 --output_stride 16 \\
      --input_size 1025 2049 --option decoder_variant=deeplabv3plus
  python scripts/profile_model.py --deeplab2_config resnet50_os32 \\
      --input_size 1025 2049 --json
  python scripts/profile_model.py --meta_architecture panoptic_fpn \\
      --backbone resnet50 --input_size 800 1333 --num_classes 133 --json
"""
import argparse
import json

from deeplab2.inference.loading import parse_overrides


def _bool(text):
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meta_architecture", default="panoptic_deeplab")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--backbone")
    model.add_argument("--deeplab2_config", help="a google-research/deeplab2 config "
                       "name (deeplab2/configs/deeplab2/), e.g. resnet50_os32; "
                       "the other model options are its")
    parser.add_argument("--input_size", type=int, nargs=2, required=True,
                        metavar=("H", "W"))
    classes = parser.add_mutually_exclusive_group()
    classes.add_argument("--num_classes", type=int,
                         help="labelled classes: those of the registered dataset with "
                         "as many (133: coco, 19: cityscapes), else a placeholder label "
                         "space (default 19)")
    classes.add_argument("--dataset", help="a dataset name, e.g. coco, or the path of a "
                         ".json dataset descriptor")
    parser.add_argument("--num_thing_classes", type=int,
                        help="thing classes among --num_classes (default: the dataset's, "
                        "else the upper half)")
    parser.add_argument("--output_stride", type=int, default=32)
    parser.add_argument("--sep_conv", type=_bool,
                        help="Panoptic-DeepLab: separable convs in ASPP, decoder and heads")
    parser.add_argument("--decoder_variant", help="Panoptic-DeepLab's decoder")
    parser.add_argument("--semantic_only", action="store_true",
                        help="Panoptic-DeepLab without its instance branch")
    parser.add_argument("--option", action="append", default=[],
                        help="another architecture option, key=value (repeatable)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from deeplab2.model import profile

    if args.deeplab2_config:
        return _profile_deeplab2_config(args, profile)
    num_classes = None if args.dataset else (args.num_classes or 19)
    if args.dataset and args.num_thing_classes is not None:
        raise SystemExit("--num_thing_classes goes with --num_classes, not --dataset.")
    options = dict(backbone=args.backbone)
    # The family's own defaults hold unless a flag is given.
    for name in ("sep_conv", "decoder_variant"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    if args.semantic_only:
        options["semantic_only"] = True
    options.update(parse_overrides(args.option))
    label_space = (_dataset(args.dataset) if args.dataset else
                   profile.label_space(num_classes, args.num_thing_classes))
    result = profile.profile_model(
        args.input_size, meta_architecture=args.meta_architecture, dataset=label_space,
        output_stride=args.output_stride, **options)
    result.update(meta_architecture=args.meta_architecture, backbone=args.backbone,
                  dataset=label_space.name,
                  num_classes=num_classes, output_stride=args.output_stride)
    if args.json:
        print(json.dumps(result))
    else:
        height, width = result["input_size"]
        print(f"{args.meta_architecture} {args.backbone} OS{args.output_stride} "
              f"{height}x{width}: {result['params_m']} M params, "
              f"{result['madds_b']} B multiply-adds")


def _dataset(dataset):
    """The DatasetInfo of --dataset; exits with a one-line error if it has none."""
    from deeplab2.data.dataset_info import UnknownDatasetError, resolve_dataset

    try:
        return resolve_dataset(dataset)
    except UnknownDatasetError as error:
        raise SystemExit(f"error: --dataset: {error}") from None


def _profile_deeplab2_config(args, profile):
    from deeplab2.training import config

    options = config.model_options(config.deeplab2_config_file(args.deeplab2_config))
    options.pop("postprocess", None)
    options.update(parse_overrides(args.option))
    result = profile.profile_model(args.input_size, **options)
    result.update(deeplab2_config=args.deeplab2_config, input_size=args.input_size,
                  **{k: options[k] for k in ("backbone", "dataset", "output_stride")})
    if args.json:
        print(json.dumps(result))
    else:
        print(f"deeplab2 {args.deeplab2_config} {args.input_size[0]}x{args.input_size[1]}: "
              f"{result['params_m']} M params, {result['madds_b']} B multiply-adds")


if __name__ == "__main__":
    main()
