"""Dataset converters: source datasets -> sharded TFRecords (deeplab2.data.tfrecord)."""
from deeplab2.data.converters.cityscapes import convert_cityscapes
from deeplab2.data.converters.coco import convert_coco
from deeplab2.data.converters.common import ConversionError
from deeplab2.data.converters.mapillary_vistas import convert_mapillary_vistas
from deeplab2.data.converters.synthetic import convert_synthetic
from deeplab2.data.converters.writer import write_split
