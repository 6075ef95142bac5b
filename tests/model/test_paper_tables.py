"""Parameters and multiply-adds against the papers' tables.

Every row of paper 000 (Panoptic-DeepLab) Tables 1, 5, 9, 10 and paper 004
(SWideRNet) Tables 3, 4, 5, 12 (each configuration once) is counted with
`deeplab2.model.profile` (trainable parameters; convolution multiply-adds of
one traced forward pass, atrous convolutions on TF's space-to-batch grid) and
must be within 1% (parameters) and 3% (multiply-adds) of the table.

Rows that cannot match carry an `ExpectedDifference` with our figures and the
reason; for them the test checks our figures (so the record stays current)
and that the row still misses the tolerance (so a fixed row is noticed).

Configurations each table used (found by reading the papers and counting):
- Paper 000: Xception-71 at output stride 16 (Tables 1, 5, 9, 10);
  Table 9's ResNet-50 is ResNet-50-beta (inception stem) at output stride 16
  and its MobileNetV3 is MobileNetV3-Large at output stride 16 with the last
  block halved. Table 1's "C = 128" rows use 128 channels for both ASPPs and
  for the semantic decoder and head; "C_Ins = 256" widens the instance
  decoder and the center/offset heads to 256.
- Paper 004: output stride 16; "Sep-Conv" off (Table 3) and the strong
  models (Table 4) use standard 3x3 ASPP and 5x5 decoder/head convolutions;
  the fast models (Tables 5, 12) use separable ones.
"""
import collections
import functools

import pytest

from configs.config_counts import COUNTS, configs_counted_with_row
from deeplab2.model import profile
from deeplab2.model.backbones import registry

# Traces 40 full-size models: minutes.
pytestmark = pytest.mark.slow

PARAMS_TOLERANCE = 0.01
MADDS_TOLERANCE = 0.03

CITYSCAPES = ((1025, 2049), 19)
COCO = ((641, 641), 133)
COCO_LARGE = ((1025, 1025), 133)
VISTAS = ((2177, 2177), 65)

Row = collections.namedtuple(
    "Row", "paper table label backbone data params_m madds_b options expected")
ExpectedDifference = collections.namedtuple(
    "ExpectedDifference", "params_m madds_b reason")

_C128 = dict(semantic_aspp_channels=128, instance_aspp_channels=128,
             semantic_decoder_channels=128, semantic_head_channels=128)
_STANDARD = dict(sep_conv=False)
_VISTAS_GAP = (
    "Mapillary Vistas rows (2177x2177) count less than the table for every "
    "backbone (Xception-71 -2.9%, Xception-65 -3.7%, ResNet-50-beta -3.4%, "
    "MobileNetV3 -10%) while the same architectures match on Cityscapes "
    "(-0.2%, +2.6%, -0.7%): the gap is neither proportional to the input "
    "area nor to the class count, so the Vistas models differ in a way the "
    "paper does not report. Not a counting tolerance issue.")
_MNV3_COCO_GAP = (
    "MobileNetV3 on COCO (641x641, 133 classes) counts 0.82 G less than the "
    "table (-6.7%) although the same model matches on Cityscapes (-0.7%) "
    "and ResNet-50-beta / Xception-71 match on COCO (+1.4%, +0.4%); the "
    "paper's COCO MobileNetV3 differs in an unreported way.")


def _row(paper, table, label, backbone, data, params_m, madds_b,
         expected=None, **options):
    return Row(paper, table, label, backbone, data, params_m, madds_b,
               options, expected)


ROWS = [
    # Paper 000, Table 1 (Cityscapes val, Xception-71, 1025x2049).
    _row("000", 1, "single ASPP + single decoder, C=128", "xception71",
         CITYSCAPES, 41.85, 496.84, dual_aspp=False, dual_decoder=False,
         **_C128),
    _row("000", 1, "single ASPP + dual decoder, C=128", "xception71",
         CITYSCAPES, 41.93, 501.88, dual_aspp=False, **_C128),
    _row("000", 1, "dual ASPP + dual decoder, C=128", "xception71",
         CITYSCAPES, 43.37, 517.17, **_C128),
    _row("000", 1, "C_Sem = 256 (final model)", "xception71", CITYSCAPES,
         46.72, 547.49),
    _row("000", 1, "C_Sem = C_Ins = 256", "xception71", CITYSCAPES, 46.88,
         573.86, instance_decoder_channels=256, instance_head_channels=256),
    _row("000", 1, "semantic only", "xception71", CITYSCAPES, 43.60, 518.84,
         semantic_only=True),
    # Paper 000, Table 5 (Mapillary Vistas, 2177x2177).
    _row("000", 5, "Xception-65", "xception65", VISTAS, 44.31, 1054.05,
         ExpectedDifference(44.33, 1015.36, _VISTAS_GAP)),
    _row("000", 5, "Xception-71", "xception71", VISTAS, 46.73, 1264.32),
    # Paper 000, Table 9 (multiply-adds only).
    _row("000", 9, "Cityscapes MNV3", "mobilenet_v3_large", CITYSCAPES,
         None, 54.17),
    _row("000", 9, "Cityscapes ResNet-50", "resnet50_beta", CITYSCAPES,
         None, 381.39),
    _row("000", 9, "Cityscapes Xception-71", "xception71", CITYSCAPES, None,
         547.49),
    _row("000", 9, "Vistas MNV3", "mobilenet_v3_large", VISTAS, None, 138.12,
         ExpectedDifference(3.66, 124.28, _VISTAS_GAP)),
    _row("000", 9, "Vistas ResNet-50", "resnet50_beta", VISTAS, None, 910.47,
         ExpectedDifference(30.11, 879.96, _VISTAS_GAP)),
    _row("000", 9, "Vistas Xception-71", "xception71", VISTAS, None,
         1264.32),
    _row("000", 9, "COCO MNV3", "mobilenet_v3_large", COCO, None, 12.24,
         ExpectedDifference(3.68, 11.42, _MNV3_COCO_GAP)),
    _row("000", 9, "COCO ResNet-50", "resnet50_beta", COCO, None, 77.79),
    _row("000", 9, "COCO Xception-71", "xception71", COCO, None, 109.21),
    _row("000", 9, "COCO Xception-71 1025x1025", "xception71", COCO_LARGE,
         None, 279.25),
    # Paper 000, Table 10 (Cityscapes, Xception-71).
    _row("000", 10, "DeepLabV3+ decoder", "xception71", CITYSCAPES, 46.61,
         553.41, decoder_variant="deeplabv3plus"),
    _row("000", 10, "Panoptic-DeepLab decoder", "xception71", CITYSCAPES,
         46.72, 547.49),
    # Paper 004, Table 3 (COCO val, 641x641).
    _row("004", 3, "WR-41", "wide_resnet41", COCO, 147.32, 655.66,
         **_STANDARD),
    _row("004", 3, "WR-41 + MG", "wide_resnet41", COCO, 147.32, 659.02,
         multi_grid=(1, 2, 4), **_STANDARD),
    _row("004", 3, "WR-41 + SAC", "wide_resnet41_sac", COCO, 151.26, 680.68,
         **_STANDARD),
    _row("004", 3, "WR-41 + SAC + SE", "swidernet_1_1_1", COCO, 168.77,
         680.79, **_STANDARD),
    _row("004", 3, "WR-41 + SAC + SE + Sep-Conv", "swidernet_1_1_1", COCO,
         136.92, 499.16),
    # Paper 004, Table 4 (COCO val, strong models, standard convs).
    _row("004", 4, "(1, 1.5, 1)", "swidernet_1_1.5_1", COCO, 345.75,
         1205.95, **_STANDARD),
    _row("004", 4, "(1, 2, 1)", "swidernet_1_2_1", COCO, 587.35, 1925.75,
         **_STANDARD),
    _row("004", 4, "(1, 1, 2)", "swidernet_1_1_2", COCO, 302.33, 1119.77,
         **_STANDARD),
    _row("004", 4, "(1, 1, 3)", "swidernet_1_1_3", COCO, 435.90, 1558.75,
         **_STANDARD),
    _row("004", 4, "(1, 1, 4)", "swidernet_1_1_4", COCO, 569.46, 1997.73,
         **_STANDARD),
    _row("004", 4, "(1, 1, 5)", "swidernet_1_1_5", COCO, 703.03, 2436.71,
         **_STANDARD),
    _row("004", 4, "(1, 1, 5.5)", "swidernet_1_1_5.5", COCO, 752.53,
         2614.01, **_STANDARD),
    _row("004", 4, "(1, 1, 6)", "swidernet_1_1_6", COCO, 836.59, 2875.69,
         **_STANDARD),
    _row("004", 4, "(1, 1.5, 2)", "swidernet_1_1.5_2", COCO, 646.22,
         2193.54, **_STANDARD),
    _row("004", 4, "(1, 1.5, 3)", "swidernet_1_1.5_3", COCO, 946.69,
         3181.12, **_STANDARD),
    _row("004", 4, "(1, 1, 3) 1025x1025", "swidernet_1_1_3", COCO_LARGE,
         435.90, 3911.58, **_STANDARD),
    _row("004", 4, "(1, 1, 4) 1025x1025", "swidernet_1_1_4", COCO_LARGE,
         569.46, 5019.62, **_STANDARD),
]

# Paper 004, Tables 5 (COCO and Cityscapes) and 12 (Cityscapes, the same
# multiply-adds): the fast models with separable convs.
for _variant, _coco, _cityscapes in (
        ("0.25_0.25_0.75", 31.67, 151.97), ("0.25_0.35_0.75", 47.13, 229.49),
        ("0.25_0.35_1", 64.98, 319.14), ("0.25_0.5_1", 116.37, 576.83),
        ("0.25_0.75_1", 240.59, 1199.85)):
    ROWS.append(_row("004", 5, f"COCO ({_variant})", f"swidernet_{_variant}",
                     COCO, None, _coco))
    ROWS.append(_row("004", "5, 12", f"Cityscapes ({_variant})",
                     f"swidernet_{_variant}", CITYSCAPES, None, _cityscapes))


@functools.lru_cache(maxsize=None)
def _count(backbone, data, options):
    (input_size, num_classes) = data
    return profile.profile_model(input_size, backbone=backbone,
                                 num_classes=num_classes, output_stride=16,
                                 **dict(options))


def _relative(ours, paper):
    return ours / paper - 1.0


def _within(row, params_m, madds_b):
    params_ok = row.params_m is None or abs(
        _relative(params_m, row.params_m)) <= PARAMS_TOLERANCE
    return params_ok and abs(
        _relative(madds_b, row.madds_b)) <= MADDS_TOLERANCE


def _configuration(row):
    return row.backbone, row.data, tuple(sorted(row.options.items()))


# One case per configuration: rows of several tables that describe the same
# model (e.g. the final Xception-71 model of 000 Tables 1, 9 and 10) are
# counted once and checked against each table's figures.
CONFIGURATIONS = collections.defaultdict(list)
for _r in ROWS:
    CONFIGURATIONS[_configuration(_r)].append(_r)


def test_every_paper_backbone_is_registered():
    missing = {r.backbone for r in ROWS} - set(registry.backbone_names())
    assert not missing, f"paper backbones missing from the registry: {sorted(missing)}"


@pytest.mark.parametrize(
    "rows", list(CONFIGURATIONS.values()),
    ids=[" + ".join(f"{r.paper}-T{r.table}-{r.label}" for r in rows)
         for rows in CONFIGURATIONS.values()])
def test_paper_rows_of_one_configuration(rows):
    backbone, data, options = _configuration(rows[0])
    result = _count(backbone, data, options)
    params_m = result["params"] / 1e6
    madds_b = result["madds"] / 1e9
    for row in rows:
        # Shipped configs of this very model and input (tests/configs).
        for config in configs_counted_with_row(row.paper, row.table, row.label):
            assert (result["params"], result["madds"]) == COUNTS[config], config
        figures = (f"{row.paper}-T{row.table} {row.label}: ours {params_m:.2f} M / "
                   f"{madds_b:.2f} G vs paper {row.params_m} M / {row.madds_b} G")
        if row.expected is None:
            assert _within(row, params_m, madds_b), figures
            continue
        assert not _within(row, params_m, madds_b), (
            f"row now matches, drop its ExpectedDifference: {figures}")
        assert params_m == pytest.approx(row.expected.params_m, abs=0.01), figures
        assert madds_b == pytest.approx(row.expected.madds_b, rel=1e-3), figures
