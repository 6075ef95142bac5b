"""Shared test fixtures: the real sample data in ../shared/data, quiet TensorFlow."""
import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
DEEPLAB2_REFERENCE = PROJECT_ROOT.parent / "shared" / "deeplab2_reference"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The folder of real sample data; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} "
                    "(it lives beside the project in ../shared/data)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def deeplab2_reference() -> pathlib.Path:
    """google-research/deeplab2's variable lists and checkpoint with its outputs;
    tests using it skip when it is absent."""
    if not DEEPLAB2_REFERENCE.is_dir():
        pytest.skip(f"deeplab2 reference data not found at {DEEPLAB2_REFERENCE} "
                    "(it lives beside the project in ../shared/deeplab2_reference)")
    return DEEPLAB2_REFERENCE


def shared_subdir(root: pathlib.Path, name: str) -> pathlib.Path:
    """`root/name`, skipping the test with a clear reason when it is missing."""
    path = root / name
    if not path.is_dir():
        pytest.skip(f"sample dataset {name!r} not found at {path}")
    return path


@pytest.fixture(scope="session")
def tiny_records(tmp_path_factory) -> pathlib.Path:
    """8 train and 2 val synthetic scenes of 64x96 as TFRecords."""
    from deeplab2.data.converters.synthetic import convert_synthetic

    out = tmp_path_factory.mktemp("synthetic")
    convert_synthetic(str(out), num_train=8, num_val=2, seed=0, height=64, width=96,
                      num_workers=1)
    return out


def pytest_collection_modifyitems(config, items):
    """Runs the files holding slow end-to-end tests first, the longest (training/)
    first of all, each file kept whole: on test.sh's 3 workers they then overlap
    with the many short files instead of ending the run alone (test.sh passes
    --no-loadscope-reorder: by default xdist reorders files by test count)."""
    def path(item):
        return item.nodeid.split("::")[0]

    slow_files = {path(item) for item in items if item.get_closest_marker("slow")}
    order = {name: rank for rank, name in enumerate(sorted(slow_files, reverse=True))}
    items.sort(key=lambda item: order.get(path(item), len(order)))
