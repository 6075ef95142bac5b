"""Photos to predict: finding them, reading them upright, naming their outputs."""
import glob
import os
import re
from typing import List, Sequence

import numpy as np
from PIL import Image, ImageOps

PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png")


class UnreadablePhotoError(ValueError):
    """A file that cannot be decoded as an image; the message says why."""


def find_photos(specs: Sequence[str]) -> List[str]:
    """The files of `specs`, each a file, a folder (its .jpg, .jpeg and .png
    files, sorted, not recursive) or a glob (its files, sorted); in order,
    each file once. Raises ValueError naming a spec that gives no file."""
    if not specs:
        raise ValueError("give at least one file, folder or glob.")
    paths = []
    for spec in specs:
        if os.path.isdir(spec):
            found = sorted(os.path.join(spec, name) for name in os.listdir(spec)
                           if name.lower().endswith(PHOTO_EXTENSIONS))
            found = [path for path in found if os.path.isfile(path)]
        elif os.path.isfile(spec):
            found = [spec]
        else:
            found = sorted(path for path in glob.glob(spec) if os.path.isfile(path))
        if not found:
            raise ValueError(f"folder {spec} has no .jpg, .jpeg or .png file."
                             if os.path.isdir(spec) else f"{spec!r} matches no file.")
        paths.extend(found)
    return list(dict.fromkeys(os.path.normpath(path) for path in paths))


def read_photo(path: str) -> np.ndarray:
    """HxWx3 uint8 RGB of an image file, turned upright as its EXIF
    orientation says; raises UnreadablePhotoError."""
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
    except Image.UnidentifiedImageError:
        raise UnreadablePhotoError("not an image file (unknown format)") from None
    except Exception as error:  # Pillow raises many kinds on corrupt files
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise UnreadablePhotoError(reason) from None
    return np.asarray(image)


def output_names(paths: Sequence[str]) -> List[str]:
    """A name per path for its output files: its base name without extension,
    characters other than letters, digits, '.', '-' and '_' replaced by '_';
    unique even on case-insensitive file systems (repeats get _2, _3, ...)."""
    names, used = [], set()
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        name = re.sub(r"[^\w.-]", "_", stem).lstrip(".") or "photo"
        candidate, number = name, 2
        while candidate.lower() in used:
            candidate, number = f"{name}_{number}", number + 1
        used.add(candidate.lower())
        names.append(candidate)
    return names
