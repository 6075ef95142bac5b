"""Writes an exported file whole or not at all.

The bytes go to a hidden temporary folder beside the target
(`.{name}.incomplete-{pid}-*`, deeplab2.utils.paths) and the file is renamed
into place once written, so a failed or killed export never leaves a
half-written file at the output path, and an earlier file there is replaced
only by a complete one. What a killed export left is removed by the next.
"""
import os
import shutil
import tempfile

import tensorflow as tf

from deeplab2.utils.paths import (OutputPathError, prepare_output_file,
                                  remove_stale_temporaries, temporary_prefix)


def check_output_file(path: str, flag: str, suffix: str) -> str:
    """`path` if a file named like that can be written there (ending in
    `suffix`), before any conversion starts; else OutputPathError naming `flag`."""
    if not path.endswith(suffix):
        raise OutputPathError(f"{flag} {path}: expected a file name ending in {suffix}")
    return prepare_output_file(path, flag)


def write_file_atomically(path: str, data: bytes) -> None:
    """Writes `data` to `path`, replacing what is there only once complete."""
    if "://" in path:  # object stores: a single write is atomic
        with tf.io.gfile.GFile(path, "wb") as f:
            f.write(data)
        return
    parent = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    remove_stale_temporaries(parent, name)
    temporary = tempfile.mkdtemp(prefix=temporary_prefix(name), dir=parent)
    try:
        written = os.path.join(temporary, name)
        with open(written, "wb") as f:
            f.write(data)
        os.chmod(written, 0o644)
        os.replace(written, path)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
