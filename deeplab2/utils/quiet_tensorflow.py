"""Hides the C++ log lines TensorFlow prints while its libraries load, when quiet.

TF 2.21 reads TF_CPP_MIN_LOG_LEVEL only after its shared libraries have
initialized, and on CPUs where oneDNN is on by default (AVX512-VNNI/BF16,
AMX) each library prints "oneDNN custom operations are on" as an INFO line
before that, through absl, whatever the level. With TF_CPP_MIN_LOG_LEVEL >= 1
(the package's default, see deeplab2/__init__.py) the first
`import tensorflow` runs with file descriptor 2 pointed at /dev/null, so a
command's stderr holds its own lines only; Python exceptions raised by the
import still propagate. `--verbosity` (TF_CPP_MIN_LOG_LEVEL=0) shows everything.
"""
import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys


@contextlib.contextmanager
def _stderr_to_devnull():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _QuietLoader(importlib.abc.Loader):
    """Runs another loader's exec_module with stderr silenced when quiet."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") in ("", "0"):
            self._loader.exec_module(module)
            return
        with _stderr_to_devnull():
            self._loader.exec_module(module)


class _TensorFlowFinder(importlib.abc.MetaPathFinder):
    """Gives `tensorflow`'s spec (found on sys.path) a quiet loader."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow" or fullname in sys.modules:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def install() -> None:
    """Makes the first `import tensorflow` quiet (no effect once it is imported)."""
    if not any(isinstance(finder, _TensorFlowFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _TensorFlowFinder())
