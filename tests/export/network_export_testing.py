"""The tiny random-weight Panoptic-DeepLab the TFLite and ONNX export tests convert."""
import keras

from deeplab2.model import build_model

SLIM = dict(semantic_aspp_channels=16, semantic_decoder_channels=16,
            semantic_low_level_channels=(8, 8), semantic_head_channels=16,
            instance_aspp_channels=16, instance_decoder_channels=8,
            instance_low_level_channels=(8, 8), instance_head_channels=8)
# Threshold 0 gives the weak heatmap of random weights centers.
POSTPROCESS = {"nms_kernel": 3, "center_threshold": 0.0}
# The synthetic records' 64x96 images pad to it; the decoder upsamples 9x13
# features to 17x25 here, and 17 / 9 is no float32.
INPUT_SIZE = (65, 97)


def tiny_model():
    keras.utils.set_random_seed(0)
    return build_model(dataset="synthetic", backbone="mobilenet_v3_small",
                       crop_size=INPUT_SIZE, postprocess=POSTPROCESS, **SLIM)
