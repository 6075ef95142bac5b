"""Fixtures of the trainer tests: small synthetic records."""
import pathlib

import pytest


@pytest.fixture(scope="session")
def tiny_records(tmp_path_factory) -> pathlib.Path:
    """8 train and 2 val synthetic scenes of 64x96 as TFRecords."""
    from deeplab2.data.converters.synthetic import convert_synthetic

    out = tmp_path_factory.mktemp("synthetic")
    convert_synthetic(str(out), num_train=8, num_val=2, seed=0, height=64, width=96,
                      num_workers=1)
    return out
