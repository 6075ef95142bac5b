"""Small Keras layers shared by backbones and decoders."""
from deeplab2.model.layers.convolutions import ConvBNAct
from deeplab2.model.layers.convolutions import DepthwiseConvBNAct
from deeplab2.model.layers.convolutions import SeparableConvBNAct
from deeplab2.model.layers.convolutions import batch_norm
from deeplab2.model.layers.convolutions import conv_bn_act
from deeplab2.model.layers.convolutions import fixed_padding
from deeplab2.model.layers.aspp import ASPP
from deeplab2.model.layers.aspp import ASPPPooling
from deeplab2.model.layers.aspp import atrous_rates_for
from deeplab2.model.layers.aspp import pool_size_for
