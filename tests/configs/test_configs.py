"""Every Gin config under configs/ parses and describes a model the papers report.

For each file: `deeplab2.training.main.parse_gin` accepts it (from the project
root, where Gin resolves `include` paths); a complete config (one that binds
`build_model.backbone`; the per-dataset `base.gin` files are only included)
names a known dataset and a registered backbone, uses one output stride
everywhere, has `k * output_stride + 1` crops, an evaluation crop covering the
dataset's largest image, file patterns matching what scripts/convert_*.py
write, the descriptor's stuff area limit and single-scale inference.

A config with a row in tests/model/test_paper_tables.py binds exactly that
row's builder arguments (backbone, output stride 16, options; every other
`build_model` binding equals the builder's default). The models of a
representative subset (one per backbone family) are counted with
`deeplab2.model.profile.profile_model` (built without allocating weights,
multiply-adds from one traced graph, nothing run) at the evaluation crop, as
`Experiment.build_model` builds them, and compared with their rows (parameters
within 1%; multiply-adds within 3% when the row's input size is the
evaluation crop). Gin is cleared between files.
"""
import fnmatch
import importlib.util
import inspect
import pathlib

import gin
import pytest

from deeplab2.data import dataset_info
from deeplab2.data.converters import writer
from deeplab2.data.converters.coco import default_split_name
from deeplab2.losses import PanopticDeepLabLoss
from deeplab2.model import builder, decoders, profile
from deeplab2.model.backbones import registry
from deeplab2.training.experiment import Experiment
from deeplab2.training.config import parse_gin
from deeplab2.training.optimizer import build_optimizer

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG_DIR = PROJECT_ROOT / "configs"
CONFIGS = sorted(str(p.relative_to(PROJECT_ROOT)) for p in CONFIG_DIR.rglob("*.gin"))
INCLUDE_ONLY = "base.gin"

# Largest (height, width) of the images evaluation pads to its crop size
# (Vistas: after the resize to 2177 on the longest side, either orientation).
MAX_IMAGE_SIZE = {
    "cityscapes": (1024, 2048),
    "coco": (640, 640),
    "mapillary_vistas": (2177, 2177),
    "synthetic": (192, 256),
}

# Split names the converters write for each dataset's train and eval records.
SPLITS = {
    "cityscapes": ("train", "val"),
    "coco": (default_split_name("panoptic_train2017.json"),
             default_split_name("panoptic_val2017.json")),
    "mapillary_vistas": ("train", "val"),
    "synthetic": ("train", "val"),
}

# Config -> (paper, table, label) of its row in tests/model/test_paper_tables.py.
PAPER_ROWS = {
    "configs/cityscapes/mobilenet_v3_large_os16.gin": ("000", 9, "Cityscapes MNV3"),
    "configs/cityscapes/resnet50_beta_os16.gin": ("000", 9, "Cityscapes ResNet-50"),
    "configs/cityscapes/xception71_os16.gin": ("000", 1, "C_Sem = 256 (final model)"),
    "configs/cityscapes/wide_resnet41_os16.gin": ("004", 3, "WR-41"),
    "configs/cityscapes/swidernet_sac_1_1_1_os16.gin": ("004", 3, "WR-41 + SAC + SE"),
    "configs/cityscapes/swidernet_sac_0.25_0.5_1_os16.gin": (
        "004", "5, 12", "Cityscapes (0.25_0.5_1)"),
    "configs/coco/resnet50_beta_os16.gin": ("000", 9, "COCO ResNet-50"),
    "configs/coco/xception71_os16.gin": ("000", 9, "COCO Xception-71"),
    "configs/coco/swidernet_sac_1_1_1_os16.gin": ("004", 3, "WR-41 + SAC + SE"),
    "configs/coco/swidernet_sac_1_1_4_os16.gin": ("004", 4, "(1, 1, 4)"),
    "configs/mapillary_vistas/xception71_os16.gin": ("000", 5, "Xception-71"),
}

# Configs whose model is counted: one per backbone family (MobileNetV3,
# ResNet at output stride 32 and 16, Xception, Wide-ResNet, fast and strong
# SWideRNet). Counting every config takes about twice as long; the others are
# tied to their paper rows through their bindings (test_config_paper_row).
COUNTED = (
    "configs/cityscapes/mobilenet_v3_large_os16.gin",
    "configs/cityscapes/resnet50_os32.gin",
    "configs/cityscapes/resnet50_beta_os16.gin",
    "configs/cityscapes/xception71_os16.gin",
    "configs/cityscapes/wide_resnet41_os16.gin",
    "configs/cityscapes/swidernet_sac_0.25_0.5_1_os16.gin",
    "configs/coco/swidernet_sac_1_1_1_os16.gin",
)

# backbone_kwargs keys that change training, not the architecture.
TRAINING_ONLY_BACKBONE_KWARGS = {"weights", "drop_path_survival_rate", "drop_path_schedule"}


def _load_paper_tables():
    path = PROJECT_ROOT / "tests" / "model" / "test_paper_tables.py"
    spec = importlib.util.spec_from_file_location("_paper_tables_for_configs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PAPER_TABLES = _load_paper_tables()


def _paper_row(key):
    paper, table, label = key
    rows = [r for r in PAPER_TABLES.ROWS
            if (r.paper, r.table, r.label) == (paper, table, label)]
    assert len(rows) == 1, f"no single row {key} in test_paper_tables.py"
    return rows[0]


def _resolve(value):
    """A bound value with Gin macros (`%NAME`) replaced by their values."""
    if isinstance(value, gin.config.ConfigurableReference):
        return _resolve(gin.query_parameter(str(value)))
    return value


def _query(binding, default=None):
    try:
        return _resolve(gin.query_parameter(binding))
    except ValueError:  # not bound
        return default


@pytest.fixture
def parsed(request, monkeypatch):
    """Parses one config from the project root; clears Gin before and after."""
    monkeypatch.chdir(PROJECT_ROOT)
    gin.clear_config()
    parse_gin([request.param], [])
    yield request.param
    gin.clear_config()


def _is_complete(config):
    return pathlib.PurePath(config).name != INCLUDE_ONLY


def test_configs_found():
    names = {pathlib.PurePath(c).parent.name for c in CONFIGS}
    assert {"cityscapes", "coco", "mapillary_vistas"} <= names
    assert set(PAPER_ROWS) | set(COUNTED) <= set(CONFIGS)


@pytest.mark.parametrize("parsed", CONFIGS, indirect=True)
def test_config(parsed, tmp_path):
    config = parsed
    backbone = _query("build_model.backbone")
    if not _is_complete(config):
        assert backbone is None, f"{config} is included by others; bind backbones elsewhere"
        return
    assert backbone in registry.backbone_names(), f"{config}: unknown backbone {backbone!r}"
    experiment = Experiment(str(tmp_path))  # raises on an unknown dataset
    name = experiment.dataset_name
    assert name in dataset_info.dataset_names()

    output_stride = _query("build_model.output_stride", 32)
    assert _query("build_dataset.output_stride", 32) == output_stride
    assert _query("build_predictor.output_stride", 32) == output_stride
    for crop in (experiment.train_crop_size, experiment.eval_crop_size):
        assert len(crop) == 2
        for size in crop:
            assert size > 1 and (size - 1) % output_stride == 0, (
                f"{config}: crop {crop} is not k * {output_stride} + 1")
    max_h, max_w = MAX_IMAGE_SIZE[name]
    eval_h, eval_w = experiment.eval_crop_size
    assert eval_h >= max_h and eval_w >= max_w, (
        f"{config}: eval crop {experiment.eval_crop_size} is smaller than {name}'s "
        f"largest image {MAX_IMAGE_SIZE[name]}")

    for pattern, split in zip((experiment.train_file_pattern,
                               experiment.eval_file_pattern), SPLITS[name]):
        shard = f"data/{name}/" + writer.shard_name(split, 3, 10)
        assert fnmatch.fnmatch(shard, pattern), f"{config}: {pattern} misses {shard}"

    assert _query("build_predictor.stuff_area_limit") in (
        None, experiment.info.stuff_area_limit)
    assert tuple(_query("build_predictor.scales", (1.0,))) == (1.0,)
    assert not _query("build_predictor.flip", False)
    # The optimizer and the loss accept their bindings.
    build_optimizer(num_steps=experiment.loop_options.num_steps)
    PanopticDeepLabLoss(ignore_label=experiment.info.ignore_label)


def _builder_default(name, bindings):
    default = inspect.signature(builder.build_model).parameters[name].default
    if default is None and name.endswith("_low_level_channels"):
        variant = bindings.get("decoder_variant", "panoptic_deeplab")
        default = decoders.VARIANTS[variant][name]
    return default


@pytest.mark.parametrize("parsed", sorted(PAPER_ROWS), indirect=True)
def test_config_paper_row(parsed):
    """The config binds exactly the builder arguments of its paper row."""
    config = parsed
    row = _paper_row(PAPER_ROWS[config])
    bindings = {k: _resolve(v) for k, v in gin.get_bindings("build_model").items()}
    assert bindings.pop("backbone") == row.backbone
    assert bindings.pop("output_stride") == 16  # every row of the tables
    backbone_kwargs = bindings.pop("backbone_kwargs", None) or {}
    assert set(backbone_kwargs) <= TRAINING_ONLY_BACKBONE_KWARGS, config
    for name in ("num_classes", "dataset", "crop_size"):
        assert name not in bindings, f"{config}: {name} comes from the Experiment"
    for name, value in bindings.items():
        expected = row.options.get(name, _builder_default(name, bindings))
        assert value == expected, f"{config}: build_model.{name} = {value!r}, row: {expected!r}"
    for name, value in row.options.items():
        assert bindings.get(name, _builder_default(name, bindings)) == value, config


@pytest.mark.parametrize("parsed", COUNTED, indirect=True)
def test_config_model_counts(parsed, tmp_path):
    """Counts the model Experiment.build_model builds, without allocating weights."""
    config = parsed
    experiment = Experiment(str(tmp_path))
    backbone_kwargs = dict(_query("build_model.backbone_kwargs") or {})
    if backbone_kwargs.pop("weights", None) is not None:  # no download to count
        with gin.unlock_config():
            gin.bind_parameter("build_model.backbone_kwargs", backbone_kwargs)
    result = profile.profile_model(experiment.eval_crop_size,
                                   dataset=experiment.dataset_name,
                                   crop_size=experiment.train_crop_size)
    assert result["params"] > 0 and result["madds"] > 0
    if config not in PAPER_ROWS:
        return
    row = _paper_row(PAPER_ROWS[config])
    params_m, madds_b = result["params"] / 1e6, result["madds"] / 1e9
    figures = (f"{config}: ours {params_m:.2f} M / {madds_b:.2f} G vs paper {row.paper} "
               f"Table {row.table} '{row.label}' {row.params_m} M / {row.madds_b} G")
    if row.params_m is not None:
        assert abs(params_m / row.params_m - 1) <= PAPER_TABLES.PARAMS_TOLERANCE, figures
    (row_size, _) = row.data
    if tuple(row_size) == experiment.eval_crop_size:
        assert abs(madds_b / row.madds_b - 1) <= PAPER_TABLES.MADDS_TOLERANCE, figures
