"""Checks shared by the top-down families' export tests: the metadata signature
and file describe the model, and TF Serving's graph-mode loader serves what
tf.saved_model.load serves."""
import json

import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2.export.metadata import read_metadata
from deeplab2.export.saved_model import INSTANCE_KEYS, MAP_KEYS


def check_metadata(loaded, export_dir: str, predictor, family: str) -> None:
    metadata = json.loads(loaded.signatures["metadata"]()["metadata"].numpy())
    assert read_metadata(export_dir) == metadata
    config = metadata["model_config"]
    assert config["meta_architecture"] == family
    info = predictor.info
    dataset = config["dataset"]
    assert dataset["class_names"] == list(info.class_names)
    assert [tuple(color) for color in dataset["colors"]] == list(info.colors)
    assert dataset["thing_ids"] == list(info.thing_ids)
    assert (dataset["label_divisor"], dataset["ignore_label"]) == (info.label_divisor,
                                                                   info.ignore_label)
    assert config["crop_size"] == list(predictor.config.crop_size)
    assert metadata["test_time"]["scales"] == [1.0] and metadata["test_time"]["flip"] is False
    assert sorted(metadata["signatures"]) == ["metadata", "serving_batch", "serving_default"]


def check_graph_mode_loader(loaded, export_dir: str, image: np.ndarray) -> None:
    """`serving_default` and `metadata` run through the TF1 loader in a Session
    (what TF Serving and `saved_model_cli run` use) give tf.saved_model.load's outputs."""
    expected = {k: v.numpy() for k, v in
                loaded.signatures["serving_default"](image=tf.constant(image)).items()}
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir)
        served = meta.signature_def["serving_default"]
        outputs = session.run({k: v.name for k, v in served.outputs.items()},
                              {served.inputs["image"].name: image})
        described = meta.signature_def["metadata"]
        text = session.run(described.outputs["metadata"].name)
    assert set(outputs) == set(expected) == set(MAP_KEYS + INSTANCE_KEYS) | {common.BOXES}
    for key in expected:
        np.testing.assert_allclose(outputs[key], expected[key], rtol=0, atol=1e-5,
                                   err_msg=key)
    assert json.loads(text) == read_metadata(export_dir)
