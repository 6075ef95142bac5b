"""What each shipped config's model counts, shared by tests/configs/test_configs.py
and tests/model/test_paper_tables.py (a config whose paper row is counted at
the config's own evaluation crop is checked there, from that one trace)."""

# (trainable parameters, multiply-adds) of each config's model at its
# evaluation crop, as `python scripts/profile_model.py --dataset ... --json`
# counts them; the README table lists them in millions / billions.
COUNTS = {
    "cityscapes/mobilenet_v3_large_os16.gin": (3_650_166, 53_766_834_984),
    "cityscapes/mobilenet_v3_small_os32.gin": (2_151_606, 34_915_420_840),
    "cityscapes/resnet50_beta_os16.gin": (30_093_574, 391_102_757_296),
    "cityscapes/resnet50_os32.gin": (29_969_606, 208_617_191_344),
    "cityscapes/swidernet_sac_0.25_0.5_1_os16.gin": (36_155_609, 576_055_887_776),
    "cityscapes/swidernet_sac_1_1_1_os16.gin": (168_719_449, 3_360_804_325_408),
    "cityscapes/swidernet_sac_1_1_4.5_os16.gin": (618_920_035, 10_863_647_743_008),
    "cityscapes/wide_resnet41_os16.gin": (147_269_974, 3_237_444_895_264),
    "cityscapes/xception71_os16.gin": (46_745_486, 546_156_398_200),
    "coco/resnet50_beta_os16.gin": (30_123_129, 78_917_565_616),
    "coco/resnet50_os32.gin": (29_999_161, 42_460_068_528),
    "coco/swidernet_sac_1_1_1_os16.gin": (168_749_004, 679_363_957_536),
    "coco/swidernet_sac_1_1_4_os16.gin": (569_444_565, 1_994_857_940_256),
    "coco/xception71_os16.gin": (46_775_041, 109_660_140_536),
    # The same model, counted at the same evaluation crop (its 1025 canvas:
    # about 2.6x the multiply-adds).
    "coco/xception71_1025_os16.gin": (46_775_041, 109_660_140_536),
    "mapillary_vistas/xception71_os16.gin": (46_757_308, 1_228_290_020_600),
    "synthetic/quickstart.gin": (674_977, 185_416_928),
    # Panoptic FPN (keras-layout ResNets: conv biases, 26,560 in R50, over the
    # spec's 45,973,990 / 45,581,971; frozen convolutions counted).
    "coco/panoptic_fpn_r50.gin": (46_000_550, 149_400_038_400),
    "coco/panoptic_fpn_r101.gin": (64_966_566, 179_703_884_800),
    "cityscapes/panoptic_fpn_r50.gin": (45_608_531, 506_460_676_096),
    "cityscapes/panoptic_fpn_r101.gin": (64_574_547, 661_616_369_664),
    "synthetic/panoptic_fpn_quickstart.gin": (1_750_104, 3_527_070_976),
    # UPSNet (keras-layout ResNets: COCO R50 is the paper's 46,076,784 plus
    # the 26,560 conv biases). The deformable layers' 9 taps count as a
    # 3x3 convolution's: 9 * (256 * 128 + 128 * 128) per pixel of P2..P5 on
    # Cityscapes (174,080 pixels at 1024x2048: 77,007,421,440),
    # 9 * (256 * 256 + 256 * 128 + 128 * 128) on COCO (34,000 at 640x640).
    "coco/upsnet_r50.gin": (46_103_344, 177_440_242_688),
    "cityscapes/upsnet_r50.gin": (44_501_244, 533_047_746_560),
    "cityscapes/upsnet_r101.gin": (63_467_260, 688_203_440_128),
    "synthetic/upsnet_quickstart.gin": (1_693_249, 3_614_173_440),
    # Seamless (keras-layout ResNet: the paper's 51,434,387 plus the 26,560
    # conv biases, minus the 53,120 affine parameters of the frozen batch norm).
    "cityscapes/seamless_r50.gin": (51_407_827, 565_796_446_208),
    "mapillary_vistas/seamless_r50.gin": (52_180_409, 1_315_442_297_344),
    "synthetic/seamless_quickstart.gin": (1_985_240, 3_615_421_696),
}

# Config -> (paper, table, label) of its row in tests/model/test_paper_tables.py.
PAPER_ROWS = {
    "cityscapes/mobilenet_v3_large_os16.gin": ("000", 9, "Cityscapes MNV3"),
    "cityscapes/resnet50_beta_os16.gin": ("000", 9, "Cityscapes ResNet-50"),
    "cityscapes/xception71_os16.gin": ("000", 1, "C_Sem = 256 (final model)"),
    "cityscapes/wide_resnet41_os16.gin": ("004", 3, "WR-41"),
    "cityscapes/swidernet_sac_1_1_1_os16.gin": ("004", 3, "WR-41 + SAC + SE"),
    "cityscapes/swidernet_sac_0.25_0.5_1_os16.gin": (
        "004", "5, 12", "Cityscapes (0.25_0.5_1)"),
    "coco/resnet50_beta_os16.gin": ("000", 9, "COCO ResNet-50"),
    "coco/xception71_os16.gin": ("000", 9, "COCO Xception-71"),
    "coco/swidernet_sac_1_1_1_os16.gin": ("004", 3, "WR-41 + SAC + SE"),
    "coco/swidernet_sac_1_1_4_os16.gin": ("004", 4, "(1, 1, 4)"),
    "mapillary_vistas/xception71_os16.gin": ("000", 5, "Xception-71"),
}

# Configs whose paper row is the same model at the same input (the config's
# evaluation crop and class count): tests/model/test_paper_tables.py checks
# their COUNTS from the row's trace, and test_configs.py checks that claim.
COUNTED_WITH_PAPER_ROW = (
    "cityscapes/mobilenet_v3_large_os16.gin",
    "cityscapes/resnet50_beta_os16.gin",
    "cityscapes/xception71_os16.gin",
    "cityscapes/swidernet_sac_0.25_0.5_1_os16.gin",
    "mapillary_vistas/xception71_os16.gin",
)


def configs_counted_with_row(paper, table, label):
    """The configs of COUNTED_WITH_PAPER_ROW whose row is (paper, table, label)."""
    return [config for config in COUNTED_WITH_PAPER_ROW
            if PAPER_ROWS[config] == (paper, table, label)]
