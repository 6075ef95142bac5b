"""Runs one benchmark: `python scripts/benchmark.py NAME [flags]`.

NAME is a module of deeplab2.benchmarks (e.g. data, model, postprocess, e2e, compare);
its `main(argv)` gets the remaining flags and prints the results as JSON.

  python scripts/benchmark.py data --examples=32
  python scripts/benchmark.py data --help
  python scripts/benchmark.py compare --families panoptic_deeplab panoptic_fpn upsnet
"""
import importlib
import pkgutil
import sys
from typing import List, Sequence

import deeplab2.benchmarks

_USAGE = "usage: benchmark.py NAME [flags]  (NAME: {names}; 'NAME --help' for its flags)"


def available() -> List[str]:
    """Names of the benchmark modules in deeplab2.benchmarks."""
    return sorted(m.name for m in pkgutil.iter_modules(deeplab2.benchmarks.__path__)
                  if not m.name.startswith("_"))


def main(argv: Sequence[str]) -> int:
    names = ", ".join(available())
    if not argv or argv[0] in ("-h", "--help"):
        print(_USAGE.format(names=names))
        return 0 if argv else 2
    name = argv[0]
    if name not in available():
        print(f"error: unknown benchmark {name!r}; available: {names}.", file=sys.stderr)
        return 2
    module = importlib.import_module(f"deeplab2.benchmarks.{name}")
    return module.main(list(argv[1:]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
