"""Paths built from names found in data: image ids, `file_name` fields.

A name read from a record or a JSON file must never lead outside the folder
it belongs to. `path_inside` is the one place where such a name becomes a
path: it accepts a relative name (subfolders allowed) and rejects anything
else with a message saying where the name came from.
"""
import os
import re
import tempfile
from typing import Callable

_SEPARATORS = re.compile(r"[/\\]")


class UnsafePathError(ValueError):
    """A name from data that is no relative path inside its folder."""


def path_inside(folder: str, name, source: str) -> str:
    """`folder/name` for a relative `name` without `..` components.

    Args:
        folder: the folder the name belongs to.
        name: the name from data (an image id plus suffix, a `file_name`).
        source: where the name comes from, for the error message (e.g.
            "file_name of image 139 in panoptic_val.json").

    Raises:
        UnsafePathError: `name` is not a string, empty, contains NUL, is
            absolute (or has a drive) or has a `..` component.
    """
    if not isinstance(name, str):
        raise UnsafePathError(f"{source}: expected a file name string, got {name!r}")
    if not name or "\0" in name:
        raise UnsafePathError(f"{source}: {name!r} is not a file name (empty or with NUL)")
    parts = _SEPARATORS.split(name)
    if os.path.isabs(name) or name[:1] in "/\\" or re.match(r"^[A-Za-z]:", name):
        raise UnsafePathError(f"{source}: {name!r} is an absolute path; expected a name "
                              f"inside {folder}")
    if ".." in parts or not any(part not in ("", ".") for part in parts):
        raise UnsafePathError(f"{source}: {name!r} leads outside {folder}; expected a "
                              "name inside it")
    return os.path.join(folder, name)


class OutputPathError(ValueError):
    """An output folder or file given by the user that cannot be written."""


def _is_remote(path: str) -> bool:
    return "://" in path  # gs://, s3://: left to TensorFlow's file systems


def prepare_output_dir(path: str, flag: str) -> str:
    """Creates the folder `path` if needed and checks that it is a writable
    folder before any work starts; `flag` names it in the error."""
    if _is_remote(path):
        return path
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputPathError(f"{flag} {path} is a file; expected a folder")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"{flag} {path}: cannot create the folder: "
                              f"{e.strerror or e}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputPathError(f"{flag} {path}: the folder is not writable")
    return path


def prepare_output_file(path: str, flag: str) -> str:
    """Checks that the file `path` can be written (its folder is created)."""
    if _is_remote(path):
        return path
    if os.path.isdir(path):
        raise OutputPathError(f"{flag} {path} is a folder; expected a file name")
    prepare_output_dir(os.path.dirname(path) or ".", flag)
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise OutputPathError(f"{flag} {path}: the file is not writable")
    return path


def temporary_prefix(name: str) -> str:
    """The prefix of this process's hidden temporary folders for `name`
    (`.{name}.incomplete-{pid}-`): the pid tells a later run whether the
    writer is still alive."""
    return f".{name}.incomplete-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_temporaries(folder: str, name: str) -> list:
    """Removes the temporary folders for `name` in `folder` that a killed run
    left (its process is gone), and only those; says what it removed."""
    import shutil

    pattern = re.compile(re.escape(f".{name}.incomplete-") + r"(\d+)-")
    removed = []
    if _is_remote(folder) or not os.path.isdir(folder):
        return removed
    for entry in sorted(os.listdir(folder)):
        match = pattern.match(entry)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            shutil.rmtree(os.path.join(folder, entry), ignore_errors=True)
            removed.append(entry)
    if removed:
        print(f"Removed {len(removed)} temporary folder(s) an interrupted run left in "
              f"{folder}: {', '.join(removed)}", flush=True)
    return removed


def write_atomically(path: str, write: Callable[[str], None]) -> None:
    """Calls `write` on a temporary file beside `path`, then renames it to `path`."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".incomplete-",
                                         suffix=os.path.splitext(path)[1], dir=directory)
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
