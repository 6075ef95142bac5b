"""`build_model`: the gin-configurable edge that assembles Panoptic-DeepLab."""
import gin
import keras

from deeplab2.data import dataset_info
from deeplab2.model import backbones
from deeplab2.model import decoders
from deeplab2.model import panoptic_deeplab
from deeplab2.model.layers import aspp


@gin.configurable
def build_model(backbone="resnet50", num_classes=None, dataset=None,
                output_stride=32, crop_size=None, multi_grid=None,
                backbone_kwargs=None,
                feature_keys=panoptic_deeplab.DEFAULT_FEATURE_KEYS,
                atrous_rates=None, semantic_aspp_channels=256,
                semantic_decoder_channels=256,
                semantic_low_level_channels=None,
                semantic_head_channels=256, instance_aspp_channels=256,
                instance_decoder_channels=128,
                instance_low_level_channels=None,
                instance_head_channels=32, sep_conv=True,
                aspp_sep_conv=None, decoder_sep_conv=None,
                decoder_variant="panoptic_deeplab", semantic_only=False,
                dual_aspp=True, dual_decoder=True, bn_momentum=0.99,
                bn_epsilon=1e-3, synchronized_bn=True):
    """Builds a `PanopticDeepLab` model.

    Args:
        backbone: name in the backbone registry.
        num_classes: semantic classes; taken from `dataset` when None.
        dataset: dataset name (`deeplab2.data.dataset_info`).
        output_stride: final backbone stride (8, 16 or 32).
        crop_size: training crop (H, W); sets the ASPP pooling window to
            its feature size. None pools globally.
        multi_grid: atrous rate multipliers of the backbone's last units,
            e.g. (1, 2, 4); None for none.
        backbone_kwargs: extra keyword arguments of the backbone.
        feature_keys: backbone feature keys (final, stride 8, stride 4).
        atrous_rates: ASPP rates; None derives them from `output_stride`.
        sep_conv: depthwise-separable convs in ASPP, decoder and heads;
            `aspp_sep_conv` / `decoder_sep_conv` override it per part.
        decoder_variant: "panoptic_deeplab" or "deeplabv3plus".
        semantic_low_level_channels, instance_low_level_channels: low-level
            projection widths; None takes the variant's defaults.
        Other arguments: see `PanopticDeepLab`.
    """
    variant = decoders.VARIANTS[decoder_variant]
    if num_classes is None:
        if dataset is None:
            raise ValueError("pass num_classes or dataset")
        num_classes = dataset_info.get_dataset_info(dataset).num_classes
    backbone_kwargs = dict(backbone_kwargs or {})
    if multi_grid is not None:
        backbone_kwargs["multi_grid"] = tuple(multi_grid)
    feature_extractor = backbones.get_backbone(
        backbone, output_stride=output_stride, **backbone_kwargs)
    # One batch-norm momentum for the whole model, backbone included.
    for layer in feature_extractor._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = bn_momentum
    return panoptic_deeplab.PanopticDeepLab(
        feature_extractor, num_classes, feature_keys=feature_keys,
        atrous_rates=atrous_rates or aspp.atrous_rates_for(output_stride),
        pool_size=aspp.pool_size_for(crop_size, output_stride),
        semantic_aspp_channels=semantic_aspp_channels,
        semantic_decoder_channels=semantic_decoder_channels,
        semantic_low_level_channels=(
            semantic_low_level_channels
            or variant["semantic_low_level_channels"]),
        semantic_head_channels=semantic_head_channels,
        instance_aspp_channels=instance_aspp_channels,
        instance_decoder_channels=instance_decoder_channels,
        instance_low_level_channels=(
            instance_low_level_channels
            or variant["instance_low_level_channels"]),
        instance_head_channels=instance_head_channels,
        aspp_sep_conv=sep_conv if aspp_sep_conv is None else aspp_sep_conv,
        decoder_sep_conv=(sep_conv if decoder_sep_conv is None
                          else decoder_sep_conv),
        decoder_variant=decoder_variant, semantic_only=semantic_only,
        dual_aspp=dual_aspp, dual_decoder=dual_decoder,
        bn_momentum=bn_momentum, bn_epsilon=bn_epsilon,
        synchronized_bn=synchronized_bn, name=f"panoptic_deeplab_{backbone}")
