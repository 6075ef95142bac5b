"""A four-layer backbone for tests whose subject is not the network (training
mechanics, distribution, benchmarks' plumbing): its XLA compilation takes
seconds where a real backbone's takes minutes."""
from deeplab2.model import backbones
from deeplab2.model.backbones.base import StrideTracker
from deeplab2.model.layers.convolutions import ConvBNAct

NAME = "strided_conv"


class StridedConvBackbone(backbones.Backbone):
    """Strided conv + batch norm + ReLU layers giving res2..res5 at strides 4..32."""

    def __init__(self, output_stride=32, **kwargs):
        super().__init__(**kwargs)
        tracker = StrideTracker(output_stride)
        self.stages, self._feature_channels = [], {}
        for index, (key, channels) in enumerate((("res2", 8), ("res3", 8), ("res4", 16),
                                                  ("res5", 16))):
            strides = [tracker(2)[0]] + ([tracker(2)[0]] if index == 0 else [])
            self.stages.append(([ConvBNAct(channels, 3, strides=s, activation="relu",
                                           name=f"{key}_conv{i}")
                                 for i, s in enumerate(strides)], key))
            self._feature_channels[key] = channels
        self._track_stages()


def register() -> str:
    """Registers the backbone (once per process); returns its name."""
    if NAME not in backbones.backbone_names():
        backbones.register_backbone(NAME, StridedConvBackbone)
    return NAME
