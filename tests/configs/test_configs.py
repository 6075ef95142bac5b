"""Every Gin config in deeplab2/configs parses and describes the model and the
training recipe its comments state.

For each file: `parse_gin` accepts it by name from any working directory (its
`include` resolving to the package's base.gin). A complete config (one that
binds `build_model.backbone`; the per-dataset `base.gin` files are only
included) gives, through the `build_model` Gin edge (the model itself not
built), a valid model config with the output stride its name says,
`k * output_stride + 1` crops and an evaluation crop covering the dataset's
largest image; file patterns matching what scripts/convert_*.py write; exactly
the training recipe of its comments (batch, steps, learning rate, warmup,
augmentation, target and loss weights), the post-processing and single-scale
inference; and the trainer, evaluator, input, targets, loss and optimizer
accept its bindings.

Every complete config's model is counted with `profile_model` at its
evaluation crop (built without allocating weights; multiply-adds from one
traced graph, nothing run): parameters and multiply-adds equal the figures
recorded here, which the README table rounds (configs beyond one per
backbone family are marked slow). A config with a row in
tests/model/test_paper_tables.py has exactly that row's architecture, and its
counts are within the row's tolerances. Gin is cleared between files.
"""
import fnmatch
import importlib.util
import inspect
import os
import pathlib

import gin
import pytest

from deeplab2.data.converters import writer
from deeplab2.data.converters.coco import default_split_name
from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.data.pipeline import TrainingInput
from deeplab2.evaluation.model_evaluation import Evaluator
from deeplab2.inference import build_predictor
from deeplab2.model import builder, get_meta_architecture, profile
from deeplab2.model.meta import make_config
from deeplab2.model.panoptic_deeplab.loss import PanopticDeepLabLoss
from deeplab2.model.panoptic_deeplab.targets import PanopticDeepLabTargets
from deeplab2.training.config import CONFIGS_DIR, parse_gin
from deeplab2.training.optimizer import build_optimizer
from deeplab2.training.trainer import Trainer

from config_counts import COUNTED_WITH_PAPER_ROW, COUNTS, PAPER_ROWS

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]
# The recipes of this library; deeplab2/ (google-research/deeplab2's
# architectures) is tested in tests/model/panoptic_deeplab/test_deeplab2_import.py.
CONFIGS = sorted(p.relative_to(CONFIGS_DIR).as_posix()
                 for p in pathlib.Path(CONFIGS_DIR).rglob("*.gin")
                 if not p.relative_to(CONFIGS_DIR).as_posix().startswith("deeplab2/"))
# Included, not run alone: base.gin and <family>_base.gin.
COMPLETE = [c for c in CONFIGS if not pathlib.PurePath(c).name.endswith("base.gin")]

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

# The recipe of each dataset's base.gin (paper 000 Sec. 4; COCO: paper 004
# Sec. 4 and deeplab2's 5e-4 with a 2000-step warmup), as the values the Gin
# parameters take (bound, or the default).
_SHARED = {
    "build_optimizer.power": 0.9,
    "TrainingInput.scale_step": 0.1,
    "TrainingInput.flip_prob": 0.5,
    "PanopticDeepLabTargets.sigma": 8,
    "PanopticDeepLabTargets.small_instance_area": 4096,  # 64x64 pixels
    "PanopticDeepLabTargets.small_instance_weight": 3.0,
    "PanopticDeepLabLoss.top_k_percent": 0.2,
    "PanopticDeepLabLoss.semantic_weight": 1.0,
    "PanopticDeepLabLoss.center_weight": 200.0,
    "PanopticDeepLabLoss.offset_weight": 0.01,
}
RECIPES = {
    "cityscapes": {
        **_SHARED,
        "build_model.crop_size": (1025, 2049),
        "Evaluator.crop_size": None,  # the training crop: the whole image
        "Trainer.global_batch_size": 32,
        "Trainer.num_steps": 60_000,
        "build_optimizer.learning_rate": 1e-3,
        "build_optimizer.warmup_steps": 0,
        "TrainingInput.min_scale": 0.5,
        "TrainingInput.max_scale": 2.0,
        "TrainingInput.autoaugment": False,
    },
    "coco": {
        **_SHARED,
        "build_model.crop_size": (641, 641),
        "Evaluator.crop_size": None,
        "Trainer.global_batch_size": 64,
        "Trainer.num_steps": 200_000,
        "build_optimizer.learning_rate": 5e-4,
        "build_optimizer.warmup_steps": 2000,
        "TrainingInput.min_scale": 0.5,
        "TrainingInput.max_scale": 1.5,
        "TrainingInput.autoaugment": True,
    },
    "mapillary_vistas": {
        **_SHARED,
        "build_model.crop_size": (1025, 1025),
        "Evaluator.crop_size": (2177, 2177),
        "Trainer.global_batch_size": 64,
        "Trainer.num_steps": 150_000,
        "build_optimizer.learning_rate": 1e-3,
        "build_optimizer.warmup_steps": 0,
        "TrainingInput.longest_side": 2177,  # paper 000 Sec. 4
        "TrainingInput.min_scale": 0.5,
        "TrainingInput.max_scale": 2.0,
        "TrainingInput.autoaugment": False,
        "build_predictor.shorter_side": 2177,  # capped: the longest side at 2177
        "build_predictor.max_longer_side": 2177,
    },
    # synthetic/quickstart.gin: minutes on a CPU (deeplab2/quickstart.py).
    "synthetic": {
        "build_model.crop_size": (193, 257),
        "Evaluator.crop_size": None,
        "Trainer.global_batch_size": 8,
        "Trainer.num_steps": 1000,
        "build_optimizer.learning_rate": 2e-3,
        "build_optimizer.warmup_steps": 0,
        "TrainingInput.min_scale": 0.75,
        "TrainingInput.max_scale": 1.25,
        "PanopticDeepLabTargets.small_instance_area": 1024,
    },
}
# Panoptic FPN recipes (SPEC_TOP_DOWN.md section 6; paper 003 Sec. 4.1 and the
# standard Mask R-CNN 1x schedule), by dataset.
_TOP_DOWN_SHARED = {
    "build_model.output_stride": 32,
    "build_optimizer.optimizer": "sgd",
    "build_optimizer.momentum": 0.9,
    "build_optimizer.schedule": "step",
    "build_optimizer.decay_factor": 0.1,
    "build_optimizer.warmup_steps": 1000,
    "build_optimizer.warmup_start_factor": 0.001,
    "build_optimizer.l2_regularization": 1e-4,
    "TrainingInput.flip_prob": 0.5,
}
TOP_DOWN_RECIPES = {
    "coco": {
        **_TOP_DOWN_SHARED,
        "build_model.crop_size": (1344, 1344),
        "Evaluator.crop_size": (640, 640),
        "Trainer.global_batch_size": 16,
        "Trainer.num_steps": 90_000,
        "build_optimizer.learning_rate": 0.02,
        "build_optimizer.decay_boundaries": (60_000, 80_000),
        "TrainingInput.shorter_side": (640, 800),
        "TrainingInput.shorter_side_step": 32,
        "TrainingInput.max_longer_side": 1333,
        "build_predictor.shorter_side": 800,  # the paper's test size
        "build_predictor.max_longer_side": 1333,
    },
    "cityscapes": {
        **_TOP_DOWN_SHARED,
        "build_model.crop_size": (512, 1024),
        "Evaluator.crop_size": (1024, 2048),
        "Trainer.global_batch_size": 32,
        "Trainer.num_steps": 65_000,
        "build_optimizer.learning_rate": 0.01,
        "build_optimizer.decay_boundaries": (40_000, 55_000),
        "TrainingInput.min_scale": 0.5,
        "TrainingInput.max_scale": 2.0,
        "TrainingInput.shorter_side": None,
        "build_predictor.shorter_side": None,  # tested at 1024x2048
    },
    # synthetic/panoptic_fpn_quickstart.gin: minutes on a CPU, Adam as the
    # Panoptic-DeepLab quickstart (deeplab2/quickstart.py --model panoptic_fpn).
    "synthetic": {
        "build_model.crop_size": (192, 256),
        "Evaluator.crop_size": None,
        "Trainer.global_batch_size": 8,
        "Trainer.num_steps": 400,
        "build_optimizer.optimizer": "adam",
        "build_optimizer.learning_rate": 2e-3,
        "build_optimizer.warmup_steps": 0,
        "TrainingInput.min_scale": 0.75,
        "TrainingInput.max_scale": 1.25,
    },
}

# UPSNet recipes (SPEC_TOP_DOWN.md section 6; paper 001 sections 4 and 6.1):
# Panoptic FPN's with a single COCO training scale, whole Cityscapes images
# and a 1500-step warmup from 0.1 x lr.
_UPSNET_WARMUP = {"build_optimizer.warmup_steps": 1500,
                  "build_optimizer.warmup_start_factor": 0.1}
UPSNET_RECIPES = {
    "coco": {**TOP_DOWN_RECIPES["coco"], **_UPSNET_WARMUP,
             "TrainingInput.shorter_side": (800, 800)},
    "cityscapes": {
        **TOP_DOWN_RECIPES["cityscapes"], **_UPSNET_WARMUP,
        "build_model.crop_size": (1024, 2048),
        "Trainer.global_batch_size": 16,
        "Trainer.num_steps": 12_000,
        "build_optimizer.learning_rate": 0.02,
        "build_optimizer.decay_boundaries": (9000,),
        "TrainingInput.shorter_side": (800, 1024),  # replaces the scale range
        "TrainingInput.max_longer_side": 2048,
    },
    "synthetic": TOP_DOWN_RECIPES["synthetic"],
}

# Seamless recipes (SPEC_TOP_DOWN.md section 6; paper 002 section 5): batch 8,
# a 200-step warmup from lr / 3, Nesterov momentum, random 1024x2048 crops of
# images scaled to a random shorter side.
_SEAMLESS_SHARED = {**_TOP_DOWN_SHARED, "build_optimizer.nesterov": True,
                    "build_optimizer.warmup_steps": 200,
                    "build_optimizer.warmup_start_factor": 0.333,
                    "build_model.crop_size": (1024, 2048), "Trainer.global_batch_size": 8,
                    "build_optimizer.learning_rate": 0.01}
SEAMLESS_RECIPES = {
    "cityscapes": {
        **TOP_DOWN_RECIPES["cityscapes"], **_SEAMLESS_SHARED,
        "Trainer.num_steps": 48_000,
        "build_optimizer.decay_boundaries": (36_000, 44_000),
        "TrainingInput.shorter_side": (512, 2048),  # 1024 t, t in [0.5, 2]
    },
    "mapillary_vistas": {
        **_SEAMLESS_SHARED,
        "Evaluator.crop_size": (2208, 2208),
        "Trainer.num_steps": 192_000,
        "build_optimizer.decay_boundaries": (144_000, 176_000),
        "TrainingInput.shorter_side": (1536, 2400),  # 1920 t, t in [0.8, 1.25]
        "build_predictor.shorter_side": 1920,
        "build_predictor.max_longer_side": 3424,
    },
    "synthetic": TOP_DOWN_RECIPES["synthetic"],
}

# What a backbone's file changes in its dataset's recipe, as its comments say.
_SWIDERNET = {"build_optimizer.learning_rate": 1e-4}  # paper 004 Sec. 4
_SWIDERNET_COCO = {**_SWIDERNET, "Trainer.num_steps": 500_000}
_MOBILENET = {"PanopticDeepLabTargets.small_instance_weight": 1.0}  # SPEC 3
RECIPE_CHANGES = {
    "cityscapes/mobilenet_v3_large_os16.gin": _MOBILENET,
    "cityscapes/mobilenet_v3_small_os32.gin": _MOBILENET,
    "cityscapes/wide_resnet41_os16.gin": _SWIDERNET,
    "cityscapes/swidernet_sac_1_1_1_os16.gin": _SWIDERNET,
    "cityscapes/swidernet_sac_0.25_0.5_1_os16.gin": _SWIDERNET,
    # Paper 004 Table 2's AutoAugment, for its strongest model.
    "cityscapes/swidernet_sac_1_1_4.5_os16.gin": {**_SWIDERNET,
                                                  "TrainingInput.autoaugment": True},
    "coco/swidernet_sac_1_1_1_os16.gin": _SWIDERNET_COCO,
    "coco/swidernet_sac_1_1_4_os16.gin": _SWIDERNET_COCO,
    # Paper 000 Sec. 4's best COCO recipe: longest side 1025, 1025x1025 crops.
    "coco/xception71_1025_os16.gin": {
        "build_model.crop_size": (1025, 1025), "Evaluator.crop_size": (641, 641),
        "TrainingInput.longest_side": 1025, "build_predictor.shorter_side": 1025,
        "build_predictor.max_longer_side": 1025},
}
# Post-processing of each dataset (SPEC 6 NMS kernels; the paper's is 7).
POSTPROCESS = {
    "cityscapes": dict(center_threshold=0.1, nms_kernel=13, keep_k_centers=200,
                       stuff_area_limit=2048),
    "coco": dict(center_threshold=0.1, nms_kernel=41, keep_k_centers=200,
                 stuff_area_limit=4096),
    "mapillary_vistas": dict(center_threshold=0.1, nms_kernel=7, keep_k_centers=200,
                             stuff_area_limit=4096),
    "synthetic": dict(center_threshold=0.1, nms_kernel=41, keep_k_centers=200,
                      stuff_area_limit=get_dataset_info("synthetic").stuff_area_limit),
}

# Configs whose model is counted by default: one per backbone family
# (MobileNetV3, ResNet at output stride 32 and 16, Xception, Wide-ResNet, fast
# and strong SWideRNet), Panoptic FPN R50 and the quickstarts. Counting the others (other
# datasets' heads, deeper variants) doubles the time: they are marked slow.
REPRESENTATIVE = (
    "cityscapes/mobilenet_v3_large_os16.gin",
    "cityscapes/resnet50_os32.gin",
    "cityscapes/resnet50_beta_os16.gin",
    "cityscapes/xception71_os16.gin",
    "cityscapes/wide_resnet41_os16.gin",
    "cityscapes/swidernet_sac_0.25_0.5_1_os16.gin",
    "coco/swidernet_sac_1_1_1_os16.gin",
    "synthetic/quickstart.gin",
    "coco/panoptic_fpn_r50.gin",
    "synthetic/panoptic_fpn_quickstart.gin",
    "synthetic/upsnet_quickstart.gin",
    "synthetic/seamless_quickstart.gin",
)

# backbone_kwargs keys that change training, not the architecture.
TRAINING_ONLY_BACKBONE_KWARGS = {"weights", "drop_path_survival_rate", "drop_path_schedule"}

# The Gin configurables the recipes bind, for the defaults of unbound parameters.
CONFIGURABLES = {
    "build_model": builder.build_model,
    "build_optimizer": build_optimizer,
    "build_predictor": build_predictor,
    "Trainer": Trainer,
    "Evaluator": Evaluator,
    "TrainingInput": TrainingInput,
    "PanopticDeepLabTargets": PanopticDeepLabTargets,
    "PanopticDeepLabLoss": PanopticDeepLabLoss,
}


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


def _value(binding):
    """The value a Gin parameter takes: its binding, else its default."""
    try:
        return _resolve(gin.query_parameter(binding))
    except ValueError:  # not bound
        configurable, parameter = binding.rsplit(".", 1)
        return inspect.signature(CONFIGURABLES[configurable]).parameters[parameter].default


def _model_config(monkeypatch):
    """The ModelConfig `build_model` makes of the parsed bindings (validated
    and completed by the family), without building the model."""
    with monkeypatch.context() as patch:
        patch.setattr(builder, "model_from_config", lambda config: config)
        return builder.build_model()


def _eval_crop(config):
    return Evaluator().crop_size or config.crop_size


@pytest.fixture
def parsed(request):
    """Parses one config by name; clears Gin before and after."""
    gin.clear_config()
    parse_gin([request.param], [])
    yield request.param
    gin.clear_config()


def test_configs_found():
    names = {pathlib.PurePath(c).parent.name for c in CONFIGS}
    assert {"cityscapes", "coco", "mapillary_vistas", "synthetic"} <= names
    assert set(COUNTS) == set(COMPLETE)
    assert set(PAPER_ROWS) | set(RECIPE_CHANGES) | set(REPRESENTATIVE) <= set(COMPLETE)


@pytest.mark.parametrize("parsed", [c for c in CONFIGS if c not in COMPLETE], indirect=True)
def test_base_configs_bind_no_backbone(parsed):
    """An included file leaves the backbone to the including one."""
    with pytest.raises(ValueError):  # not bound
        gin.query_parameter("build_model.backbone")


@pytest.mark.parametrize("parsed", COMPLETE, indirect=True)
def test_config(parsed, monkeypatch, tmp_path):
    name = parsed
    config = _model_config(monkeypatch)
    info = config.dataset
    assert info.name == pathlib.PurePath(name).parent.name
    if "_os" in name:
        assert config.output_stride == int(name[name.rindex("_os") + 3:-len(".gin")])
    for crop in (config.crop_size, _eval_crop(config)):
        config.check_input_size(crop)  # the family's rule, e.g. k * output_stride + 1
    max_h, max_w = MAX_IMAGE_SIZE[info.name]
    eval_h, eval_w = _eval_crop(config)
    assert eval_h >= max_h and eval_w >= max_w, (
        f"{name}: eval crop {_eval_crop(config)} is smaller than the largest image")

    trainer, evaluator = Trainer(str(tmp_path)), Evaluator()
    for pattern, split in zip((trainer.train_file_pattern, evaluator.file_pattern),
                              SPLITS[info.name]):
        shard = f"data/{info.name}/" + writer.shard_name(split, 3, 10)
        assert fnmatch.fnmatch(shard, pattern), f"{name}: {pattern} misses {shard}"

    if config.meta_architecture == "panoptic_fpn":
        expected = TOP_DOWN_RECIPES[info.name]
        postprocess = dict(score_threshold=0.5, overlap_threshold=0.5,
                           stuff_area_limit=info.stuff_area_limit)
    elif config.meta_architecture == "upsnet":
        expected = UPSNET_RECIPES[info.name]
        postprocess = dict(score_threshold=0.6, nms_threshold=0.5, overlap_threshold=0.3,
                           stuff_area_limit=info.stuff_area_limit)
    elif config.meta_architecture == "seamless":
        expected = SEAMLESS_RECIPES[info.name]
        # Paper 002: 4096 pixels on every dataset (the synthetic scenes keep theirs).
        postprocess = dict(score_threshold=0.5, overlap_threshold=0.5,
                           stuff_area_limit=64 if info.name == "synthetic" else 4096)
    else:
        expected = {**RECIPES[info.name], **RECIPE_CHANGES.get(name, {})}
        postprocess = POSTPROCESS[info.name]
    assert {binding: _value(binding) for binding in expected} == expected
    assert config.postprocess == postprocess
    if config.meta_architecture != "seamless":
        assert config.postprocess["stuff_area_limit"] == info.stuff_area_limit
    assert tuple(_value("build_predictor.scales")) == (1.0,)
    assert _value("build_predictor.flip") is False

    # What the trainer builds accepts the bindings.
    family = get_meta_architecture(config.meta_architecture)
    family.training_targets(config)
    family.training_loss(config)
    TrainingInput()
    build_optimizer(num_steps=trainer.num_steps)


@pytest.mark.parametrize("config_file", [
    c for c in COMPLETE
    if "include" in (pathlib.Path(CONFIGS_DIR) / c).read_text()])
@pytest.mark.parametrize("as_path", [False, True], ids=["name", "path"])
def test_includes_resolve_from_any_directory(config_file, as_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    gin.clear_config()
    try:
        parse_gin([os.path.join(CONFIGS_DIR, config_file) if as_path else config_file], [])
        dataset = _value("build_model.dataset")  # bound by the included base.gin
    finally:
        gin.clear_config()
    assert dataset == pathlib.PurePath(config_file).parent.name


@pytest.mark.parametrize("parsed", sorted(PAPER_ROWS), indirect=True)
def test_config_paper_row(parsed, monkeypatch):
    """The config's architecture is exactly its paper row's."""
    config = _model_config(monkeypatch)
    row = _paper_row(PAPER_ROWS[parsed])
    assert config.output_stride == 16  # every row of the tables
    architecture = dict(config.architecture)
    assert set(architecture.pop("backbone_kwargs")) <= TRAINING_ONLY_BACKBONE_KWARGS
    expected = dict(make_config(
        config.meta_architecture, config.dataset, output_stride=16,
        crop_size=config.crop_size, pixel_mean=config.pixel_mean,
        pixel_std=config.pixel_std, architecture=dict(row.options, backbone=row.backbone),
        postprocess={}).architecture)
    assert expected.pop("backbone_kwargs") == {}
    assert architecture == expected


@pytest.mark.parametrize("parsed", COUNTED_WITH_PAPER_ROW, indirect=True)
def test_config_is_counted_with_its_paper_row(parsed, monkeypatch):
    """Its paper row is the same model at the same input: the row's trace in
    test_paper_tables.py checks the config's COUNTS."""
    config = _model_config(monkeypatch)
    row = _paper_row(PAPER_ROWS[parsed])
    assert row.data == (tuple(_eval_crop(config)), config.dataset.num_classes)


@pytest.mark.parametrize("parsed", [
    c if c in REPRESENTATIVE else pytest.param(c, marks=pytest.mark.slow)
    for c in COMPLETE if c not in COUNTED_WITH_PAPER_ROW], indirect=True)
def test_config_model_counts(parsed, monkeypatch):
    """Counts the model the config builds, at its evaluation crop, without
    allocating weights."""
    config = _model_config(monkeypatch)
    eval_crop = _eval_crop(config)
    result = profile.profile_model(eval_crop, meta_architecture=config.meta_architecture,
                                   dataset=config.dataset,
                                   output_stride=config.output_stride,
                                   crop_size=config.crop_size, **config.architecture)
    assert (result["params"], result["madds"]) == COUNTS[parsed]
    if parsed not in PAPER_ROWS:
        return
    row = _paper_row(PAPER_ROWS[parsed])
    params_m, madds_b = result["params"] / 1e6, result["madds"] / 1e9
    figures = (f"{parsed}: ours {params_m:.2f} M / {madds_b:.2f} G vs paper {row.paper} "
               f"Table {row.table} '{row.label}' {row.params_m} M / {row.madds_b} G")
    if row.params_m is not None:
        assert abs(params_m / row.params_m - 1) <= PAPER_TABLES.PARAMS_TOLERANCE, figures
    (row_size, _) = row.data
    if tuple(row_size) == tuple(eval_crop):
        assert abs(madds_b / row.madds_b - 1) <= PAPER_TABLES.MADDS_TOLERANCE, figures
