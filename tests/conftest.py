"""Shared test fixtures: the real sample data in ../shared/data, quiet TensorFlow."""
import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The folder of real sample data; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} "
                    "(it lives beside the project in ../shared/data)")
    return SHARED_DATA


def shared_subdir(root: pathlib.Path, name: str) -> pathlib.Path:
    """`root/name`, skipping the test with a clear reason when it is missing."""
    path = root / name
    if not path.is_dir():
        pytest.skip(f"sample dataset {name!r} not found at {path}")
    return path
