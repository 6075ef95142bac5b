"""Static-shape iteration over the image tiles that contain pixels of interest.

Thing pixels are usually a small part of an image (about a tenth in Cityscapes),
and grouping and instance scores only concern them. XLA needs static shapes, so
instead of gathering a dynamic number of pixels, the batch is cut into tiles,
the tiles holding at least one pixel of interest are listed first, and a while
loop visits them one per step, reading a fixed-size window of the inputs.
"""
from typing import List, NamedTuple, Tuple, Union

import tensorflow as tf


class TileList(NamedTuple):
    """Tiles of a [B, H, W] batch that hold pixels of interest.

    ids: [N] int32 tile ids b * rows * cols + row * cols + col; the first `count`
        are the tiles of interest, in increasing order.
    count: scalar int32.
    """
    ids: tf.Tensor
    count: tf.Tensor


class Window(NamedTuple):
    """The pixels of one tile, read as a window that lies inside the image.

    A tile at the bottom or right border is cut by the image edge; its window is
    moved back inside the image instead, so it overlaps the previous tile, and
    `own` marks the pixels that belong to the tile itself.

    image, top, left: scalar int32 corner of the window.
    y: [h, 1] and x: [1, w] int32 coordinates of the window's pixels.
    own: [h, w] bool.
    """
    image: tf.Tensor
    top: tf.Tensor
    left: tf.Tensor
    y: tf.Tensor
    x: tf.Tensor
    own: tf.Tensor


Size = Union[int, tf.Tensor]


def shape_of(tensor: tf.Tensor) -> List[Size]:
    """Static sizes where known, scalar int32 tensors elsewhere.

    Graphs traced with unknown sizes (e.g. an exported model's image size) are
    compiled by XLA once per concrete shape, where these sizes are constants.
    """
    return [size if size is not None else tf.shape(tensor)[i]
            for i, size in enumerate(tensor.shape.as_list())]


def minimum(a: Size, b: Size) -> Size:
    """min() of two sizes, static or not."""
    if isinstance(a, int) and isinstance(b, int):
        return min(a, b)
    return tf.minimum(a, b)


def tile_shape(height: Size, width: Size, tile_size: int) -> Tuple[Size, Size]:
    """Tile size clipped to the image: windows must fit inside it."""
    return minimum(tile_size, height), minimum(tile_size, width)


def _grid(height: Size, width: Size, tile_h: Size, tile_w: Size) -> Tuple[Size, Size]:
    """Rows and columns of tiles (ceiling divisions)."""
    return -(-height // tile_h), -(-width // tile_w)


def list_tiles(mask: tf.Tensor, tile_size: int) -> TileList:
    """Lists the tiles of a [B, H, W] bool mask that contain a True pixel."""
    batch, height, width = shape_of(mask)
    tile_h, tile_w = tile_shape(height, width, tile_size)
    rows, cols = _grid(height, width, tile_h, tile_w)
    padded = tf.pad(mask, [[0, 0], [0, rows * tile_h - height],
                           [0, cols * tile_w - width]])
    tiles = tf.reshape(padded, [batch, rows, tile_h, cols, tile_w])
    active = tf.reshape(tf.reduce_any(tiles, axis=[2, 4]), [-1])
    ids = tf.argsort(tf.cast(tf.logical_not(active), tf.int32), stable=True)
    return TileList(ids, tf.reduce_sum(tf.cast(active, tf.int32)))


def window(tile_id: tf.Tensor, shape, tile_size: int) -> Window:
    """The window of tile `tile_id` in a batch of shape (B, H, W) (see `shape_of`)."""
    _, height, width = shape
    tile_h, tile_w = tile_shape(height, width, tile_size)
    rows, cols = _grid(height, width, tile_h, tile_w)
    row = tile_id % (rows * cols) // cols
    col = tile_id % cols
    top = tf.minimum(row * tile_h, height - tile_h)
    left = tf.minimum(col * tile_w, width - tile_w)
    y = top + tf.range(tile_h)[:, None]
    x = left + tf.range(tile_w)[None, :]
    own = tf.logical_and(y >= row * tile_h, x >= col * tile_w)
    return Window(tile_id // (rows * cols), top, left, y, x, own)
