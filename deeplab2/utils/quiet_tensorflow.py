"""Holds back the C++ log lines TensorFlow prints while its libraries load, below
the level TF_CPP_MIN_LOG_LEVEL asks for.

TF 2.21 reads TF_CPP_MIN_LOG_LEVEL only after its shared libraries have
initialized, and on CPUs where oneDNN is on by default (AVX512-VNNI/BF16,
AMX) each library prints "oneDNN custom operations are on" as an INFO line
before that, through absl, whatever the level. So the first `import
tensorflow` after `import deeplab2` writes file descriptor 2 to a temporary
file, and afterwards copies it back to stderr without the absl log records
below the level (INFO at 1, also WARNING at 2, also ERROR at 3, each with its
continuation lines) and absl's "before absl::InitializeLog()" notice. Anything
else (Python warnings, errors) is kept, and everything is kept when the import
raises. Level 0 (`--verbosity`) or no usable stderr: nothing is touched. A
process killed during the import loses what it wrote to fd 2.
"""
import contextlib
import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile

# An absl log line: severity letter, MMDD, time, thread, file:line].
_RECORD = re.compile(rb"^([IWEF])\d{4} [\d:.]+ +\d+ [^\]]+\] ")
_PREINIT_NOTICE = b"WARNING: All log messages before absl::InitializeLog() is called"
_SEVERITY_LEVEL = {b"I": 1, b"W": 2, b"E": 3}


def _min_level() -> int:
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") or 0)
    except ValueError:
        return 0


def filter_log(text: bytes, min_level: int) -> bytes:
    """`text` without the absl records whose severity is below `min_level`
    (with their continuation lines, up to the next record or blank line) and
    without absl's pre-init notice."""
    kept, dropping = [], False
    for line in text.splitlines(keepends=True):
        record = _RECORD.match(line)
        if record:
            dropping = _SEVERITY_LEVEL.get(record.group(1), 4) <= min_level
        elif line.startswith(_PREINIT_NOTICE):
            dropping = True
        elif not line.strip():
            dropping = False
        if not dropping:
            kept.append(line)
    return b"".join(kept)


@contextlib.contextmanager
def _filtered_stderr(min_level: int):
    """fd 2 into a temporary file for the block, then its filtered text back."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no usable stderr: leave it alone
        yield
        return
    failed = True
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read()
            os.write(2, text if failed else filter_log(text, min_level))


class _QuietLoader(importlib.abc.Loader):
    """Runs another loader's exec_module with stderr filtered, then puts that
    loader back on the module (its resources and `is_package` stay reachable)."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = module.__spec__.loader = self._loader
        min_level = _min_level()
        if min_level <= 0:
            self._loader.exec_module(module)
            return
        with _filtered_stderr(min_level):
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
