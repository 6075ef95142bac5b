"""google-research/deeplab2 checkpoints: same variables, exact outputs, loud refusals.

Reads ../shared/deeplab2_reference (deeplab2's variable lists for its ten
Cityscapes configs, one real deeplab2 checkpoint and the outputs deeplab2
computed with it); skips when it is absent.
"""
import collections
import importlib.util
import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import deeplab2
from deeplab2 import common
from deeplab2.inference import Predictor
from deeplab2.model import build_model, checkpoints
from deeplab2.model.panoptic_deeplab import deeplab2_import
from deeplab2.training import config as gin_config

from conftest import PROJECT_ROOT

CONFIGS = ["mobilenet_v3_small_os16", "mobilenet_v3_small_os32", "mobilenet_v3_large_os16",
           "mobilenet_v3_large_os32", "resnet50_os32", "resnet50_beta_os32",
           "wide_resnet41_os16", "swidernet_sac_1_1_1_os16",
           pytest.param("swidernet_sac_1_1_3_os16", marks=pytest.mark.slow),
           pytest.param("swidernet_sac_1_1_4.5_os16", marks=pytest.mark.slow)]
# deeplab2's post-processing settings of the reference run (README).
REFERENCE_POSTPROCESS = dict(center_threshold=0.1, nms_kernel=7, keep_k_centers=400,
                             stuff_area_limit=2048)


def _reference_variables(root, name):
    file = {"resnet50_os32": "resnet50_os32_merge_with_pure_tf_func"}.get(name, name)
    with open(root / "variables" / f"{file}_variables.json") as f:
        return json.load(f)


def _import_script():
    spec = importlib.util.spec_from_file_location(
        "import_deeplab2", PROJECT_ROOT / "scripts" / "import_deeplab2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", CONFIGS)
def test_each_deeplab2_config_has_exactly_deeplab2s_variables(deeplab2_reference, name):
    reference = _reference_variables(deeplab2_reference, name)
    model = build_model(**gin_config.model_options(gin_config.deeplab2_config_file(name)))
    ours = deeplab2_import.deeplab2_variables(model)
    theirs = {key: tuple(shape) for _, shape, _, _, key in reference["variables"]}
    assert sorted(ours) == sorted(theirs)  # one to one, every key
    assert {k: tuple(v.shape) for k, v in ours.items()} == theirs
    weights = [v for v in model.weights if "seed_generator" not in v.path]
    assert len(weights) == reference["num_variables"]
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    statistics = sum(int(np.prod(v.shape)) for v in weights if not v.trainable)
    assert trainable == reference["total_trainable_params"]
    assert statistics == reference["total_non_trainable_params"]
    del model
    keras.backend.clear_session()


@pytest.mark.parametrize("name", gin_config.deeplab2_config_names())
def test_every_deeplab2_config_parses_to_its_dataset(name, monkeypatch):
    from deeplab2.model import builder

    options = gin_config.model_options(gin_config.deeplab2_config_file(name))
    monkeypatch.setattr(builder, "model_from_config", lambda config: config)
    config = builder.build_model(**options)  # validated by the family, not built
    info = config.dataset
    if name.startswith("coco/"):
        # 133 categories plus void (0), as deeplab2's 134 COCO logits.
        assert (info.name, info.num_classes, info.label_divisor) == ("coco", 134, 256)
        assert info.ignore_label == 0
    else:
        assert (info.name, info.num_classes, info.label_divisor) == ("cityscapes", 19, 1000)
        assert config.postprocess["nms_kernel"] == (7 if "mobilenet" in name and
                                                    name.endswith("_os16") else 13)
    assert config.output_stride == int(name[name.rindex("_os") + 3:])
    assert config.architecture["aspp_sep_conv"] is False
    assert config.architecture["decoder_sep_conv"] is True


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v3_small_os16", "resnet50_os32"])
def test_profile_counts_deeplab2s_multiply_adds(deeplab2_reference, name, capsys):
    spec = importlib.util.spec_from_file_location(
        "profile_model", PROJECT_ROOT / "scripts" / "profile_model.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(["--deeplab2_config", name, "--input_size", "1025", "2049", "--json"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    reference = _reference_variables(deeplab2_reference, name)
    assert result["params_all"] == reference["total_params"]
    assert result["madds"] / 1e9 == pytest.approx(
        reference["multiply_adds_gmacs_conv_1025x2049"], rel=0.01)


@pytest.fixture(scope="module")
def imported(deeplab2_reference, tmp_path_factory):
    """The shared checkpoint imported with scripts/import_deeplab2.py."""
    output = tmp_path_factory.mktemp("imported") / "mnv3s_os16"
    status = _import_script().main([
        "--checkpoint", str(deeplab2_reference / "mnv3s_os16" / "checkpoint"),
        "--config", "mobilenet_v3_small_os16", "--output_dir", str(output)])
    assert status == 0
    return output


@pytest.fixture(scope="module")
def reference_outputs(deeplab2_reference):
    return dict(np.load(deeplab2_reference / "mnv3s_os16" / "mnv3s_os16_infer_513x1025.npz"))


def _close(ours, theirs):
    """Within 1e-4 of the reference array's largest magnitude."""
    ours = np.asarray(ours).reshape(theirs.shape)
    assert np.abs(ours - theirs).max() <= 1e-4 * np.abs(theirs).max()


def test_the_imported_model_computes_deeplab2s_outputs(deeplab2_reference, imported,
                                                       reference_outputs):
    model = deeplab2.load_model(str(imported))
    photo = np.asarray(Image.open(deeplab2_reference / "mnv3s_os16" /
                                  "dummy_000000_000000_leftImg8bit.png").convert("RGB"))
    predictor = Predictor(model, fit_size=(513, 1025), postprocess=REFERENCE_POSTPROCESS)
    images, size = predictor.prepare_image(photo)
    assert [int(s) for s in size] == [513, 513]
    _close(images, reference_outputs["input_image"])
    images = tf.constant(reference_outputs["input_image"])

    raw = model.head_outputs(images, training=False)
    _close(raw[common.SEMANTIC_LOGITS], reference_outputs["raw_semantic_logits"])
    _close(raw[common.CENTER_HEATMAP], reference_outputs["raw_center_heatmap"])
    _close(raw[common.OFFSET], reference_outputs["raw_offset_map"])
    full = model(images, training=False)
    y0, x0, y1, x1 = reference_outputs["window_y0x0y1x1"]
    _close(full[common.SEMANTIC_LOGITS][:, y0:y1, x0:x1],
           reference_outputs["semantic_logits_window"])
    _close(full[common.CENTER_HEATMAP], reference_outputs["center_heatmap"])
    _close(full[common.OFFSET], reference_outputs["offset_map"])

    predictions = predictor(images)
    semantic = np.asarray(predictions[common.SEMANTIC])[0]
    same_class = semantic == reference_outputs["semantic_pred"][0]
    assert same_class.mean() >= 0.9999
    # The same partition as deeplab2's pure-TF merge, up to instance numbering,
    # wherever the semantic prediction agrees.
    ours = np.asarray(predictions[common.PANOPTIC])[0][same_class]
    theirs = reference_outputs["panoptic_pred"][0][same_class]
    pairs = collections.Counter(zip(ours.tolist(), theirs.tolist()))
    assert len({o for o, _ in pairs}) == len(pairs) == len({t for _, t in pairs})
    assert all(o // 1000 == t // 1000 for o, t in pairs)  # same classes
    assert len(pairs) == len(np.unique(theirs)) > 300


def test_plain_inference_equals_post_processing_full_resolution_outputs_on_photos(
        deeplab2_reference, imported, shared_data):
    """The upsampling inside post-processing predicts, on real photos, what the
    post-processing of the model's full-resolution probabilities predicts."""
    model = deeplab2.load_model(str(imported))
    predictor = Predictor(model, fit_size=(513, 1025), postprocess=REFERENCE_POSTPROCESS)
    photos = [deeplab2_reference / "mnv3s_os16" / "dummy_000000_000000_leftImg8bit.png"]
    photos += sorted((shared_data / "cityscapes" / "leftImg8bit").rglob("*.png"))[:1]
    photos += sorted((shared_data / "coco_panoptic" / "images").glob("*.jpg"))[:1]
    assert len(photos) == 3
    for photo in photos:
        images, _ = predictor.prepare_image(np.asarray(Image.open(photo).convert("RGB")))
        plain = predictor(images)
        full = predictor.family.postprocess(predictor.raw_predictions(images),
                                            predictor.config, predictor.config.postprocess)
        for key in (common.SEMANTIC, common.INSTANCE, common.PANOPTIC,
                    common.INSTANCE_CLASSES, common.INSTANCE_PANOPTIC_IDS):
            np.testing.assert_array_equal(plain[key], full[key], err_msg=f"{photo.name} {key}")
        np.testing.assert_allclose(plain[common.INSTANCE_SCORES],
                                   full[common.INSTANCE_SCORES], rtol=1e-5, atol=1e-7)
        assert (plain[common.INSTANCE_SCORES].numpy() > 0.1).sum() >= 3, photo.name


def test_the_os32_variant_restores_from_the_same_checkpoint(deeplab2_reference, tmp_path):
    output = tmp_path / "os32"
    assert _import_script().main([
        "--checkpoint", str(deeplab2_reference / "mnv3s_os16" / "checkpoint"),
        "--config", "mobilenet_v3_small_os32", "--output_dir", str(output)]) == 0
    model = deeplab2.load_model(str(output))
    assert model.model_config.output_stride == 32
    reader = tf.train.load_checkpoint(str(deeplab2_reference / "mnv3s_os16" / "checkpoint"))
    for key, variable in deeplab2_import.deeplab2_variables(model).items():
        np.testing.assert_array_equal(np.asarray(variable), reader.get_tensor(key))
    outputs = model(tf.fill((1, 129, 161, 3), 127.5), training=False)
    assert outputs[common.SEMANTIC_LOGITS].shape == (1, 129, 161, 19)


def test_init_checkpoint_reads_deeplab2_checkpoints(deeplab2_reference):
    model = build_model(**gin_config.model_options(
        gin_config.deeplab2_config_file("mobilenet_v3_small_os16")))
    family = deeplab2.model.get_meta_architecture("panoptic_deeplab")
    report = checkpoints.init_from_checkpoint(
        model, str(deeplab2_reference / "mnv3s_os16" / "checkpoint"), required="all",
        foreign_formats=family.foreign_checkpoint_formats)
    assert len(report.loaded) == 362 and not report.missing and not report.unused


@pytest.mark.parametrize("case", ["architecture", "classes", "config", "no_checkpoint",
                                  "truncated"])
def test_bad_imports_are_one_line_errors_and_leave_nothing(deeplab2_reference, tmp_path,
                                                           capsys, case):
    checkpoint = str(deeplab2_reference / "mnv3s_os16" / "checkpoint")
    config, extra, expected = "mobilenet_v3_small_os16", [], None
    if case == "architecture":
        config, expected = "resnet50_os32", "refused to load"
    elif case == "classes":
        extra, expected = ["--dataset", "coco"], "predicts 19 classes but dataset 'coco'"
    elif case == "config":
        config, expected = "resnet51_os32", "unknown deeplab2 config 'resnet51_os32'"
    elif case == "no_checkpoint":
        checkpoint, expected = str(tmp_path), "no checkpoint in"
    else:
        broken = tmp_path / "broken"
        shutil.copytree(checkpoint, broken)
        data = next(broken.glob("*.data-*"))
        data.write_bytes(data.read_bytes()[:1000])
        checkpoint, expected = str(broken), "damaged"
    output = tmp_path / "out"
    assert _import_script().main(["--checkpoint", checkpoint, "--config", config,
                                  "--output_dir", str(output), *extra]) == 1
    error = capsys.readouterr().err.strip()
    assert expected in error and "\n" not in error
    assert not output.exists()
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".out")]


def test_an_encoder_only_checkpoint_initializes_the_backbone(deeplab2_reference, tmp_path):
    # deeplab2's ImageNet checkpoints hold the encoder alone.
    reader = tf.train.load_checkpoint(str(deeplab2_reference / "mnv3s_os16" / "checkpoint"))
    keys = [k for k in reader.get_variable_to_shape_map() if k.startswith("encoder/")]
    prefix = str(tmp_path / "imagenet")
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=keys, shape_and_slices=[""] * len(keys),
                      tensors=[tf.constant(reader.get_tensor(k)) for k in keys])
    model = build_model(**gin_config.model_options(
        gin_config.deeplab2_config_file("mobilenet_v3_small_os16")))
    family = deeplab2.model.get_meta_architecture("panoptic_deeplab")
    report = checkpoints.init_from_checkpoint(
        model, prefix, foreign_formats=family.foreign_checkpoint_formats)
    assert len(report.loaded) == len(keys) and not report.missing and not report.unused
    first = model.backbone.stages[0][0][0].conv.kernel
    np.testing.assert_array_equal(
        np.asarray(first), reader.get_tensor("encoder/_blocks/0/_conv/kernel/.ATTRIBUTES/"
                                             "VARIABLE_VALUE"))
    report = deeplab2_import.load_deeplab2_checkpoint(model, prefix)  # encoder only
    assert len(report.loaded) == len(keys)
