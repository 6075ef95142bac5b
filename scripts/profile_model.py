"""Prints parameters and multiply-adds of a Panoptic-DeepLab model.

Counted from the traced graph without running it (see deeplab2.model.profile:
convolutions and matrix products only, like the papers' tables).

Example:
  python scripts/profile_model.py --backbone resnet50 --input_size 1025 2049 \\
      --num_classes 19 --output_stride 32 --json
"""
import argparse
import json

from deeplab2.model import profile


def _bool(text):
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--input_size", type=int, nargs=2, required=True,
                        metavar=("H", "W"))
    parser.add_argument("--num_classes", type=int, default=19)
    parser.add_argument("--output_stride", type=int, default=32)
    parser.add_argument("--sep_conv", type=_bool, default=True,
                        help="separable convs in ASPP, decoder and heads")
    parser.add_argument("--decoder_variant", default="panoptic_deeplab")
    parser.add_argument("--semantic_only", action="store_true")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    result = profile.profile_model(
        args.input_size, backbone=args.backbone, num_classes=args.num_classes,
        output_stride=args.output_stride, sep_conv=args.sep_conv,
        decoder_variant=args.decoder_variant,
        semantic_only=args.semantic_only)
    result.update(backbone=args.backbone, input_size=args.input_size,
                  num_classes=args.num_classes,
                  output_stride=args.output_stride)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.backbone} OS{args.output_stride} "
              f"{args.input_size[0]}x{args.input_size[1]}, "
              f"{args.num_classes} classes: {result['params_m']} M params, "
              f"{result['madds_b']} B multiply-adds")


if __name__ == "__main__":
    main()
