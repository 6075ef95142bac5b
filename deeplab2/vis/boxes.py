"""Box outlines drawn into RGB pictures, with numpy only."""
import numpy as np

from deeplab2.vis.layout import as_rgb


def draw_boxes(image, boxes, colors, thickness: int = 1) -> np.ndarray:
    """A copy of an HxWx3 image with the outline of each box drawn in its color.

    Boxes are [N, 4] (x0, y0, x1, y1) in pixel edges (pixel i spans
    [i, i + 1)), rounded to the nearest edges; the outline is the `thickness`
    pixels just inside them (a box thinner than twice that is filled). Parts
    outside the image are not drawn; boxes without pixels draw nothing.
    `colors` is [N, 3] RGB, or one RGB color for all boxes.
    """
    image = as_rgb(image).copy()
    height, width = image.shape[:2]
    boxes = np.asarray(boxes, np.float64)
    if boxes.size == 0:
        return image
    if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.all(np.isfinite(boxes)):
        raise ValueError(f"boxes must be finite [N, 4] (x0, y0, x1, y1), got shape "
                         f"{boxes.shape}")
    colors = np.asarray(colors)
    if colors.shape == (3,):
        colors = np.broadcast_to(colors, (len(boxes), 3))
    if colors.shape != (len(boxes), 3):
        raise ValueError(f"colors must be one RGB color or [{len(boxes)}, 3], got shape "
                         f"{colors.shape}")
    if thickness < 1:
        raise ValueError(f"thickness must be at least 1, got {thickness}")
    # Far-away edges move to just beyond the reach of the outline, so the
    # integer conversion cannot overflow and what is drawn does not change.
    limits = np.array([width, height, width, height]) + thickness
    edges = np.floor(np.clip(boxes, -thickness, limits) + 0.5).astype(np.int64)
    for (x0, y0, x1, y1), color in zip(edges, colors):
        if x1 <= x0 or y1 <= y0:
            continue
        for top, bottom, left, right in (
                (y0, min(y0 + thickness, y1), x0, x1),  # top side
                (max(y1 - thickness, y0), y1, x0, x1),  # bottom side
                (y0, y1, x0, min(x0 + thickness, x1)),  # left side
                (y0, y1, max(x1 - thickness, x0), x1)):  # right side
            image[max(top, 0):max(bottom, 0), max(left, 0):max(right, 0)] = color
    return image
