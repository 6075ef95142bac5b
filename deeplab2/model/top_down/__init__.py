"""The Mask R-CNN machinery shared by the top-down families (Panoptic FPN,
UPSNet, Seamless): FPN, anchors, RPN, RoIAlign, box and mask heads, their
targets and losses, and detection post-processing. Boxes are (x0, y0, x1, y1)
in image pixels, pixel i spanning [i, i + 1) (see ../shared/docs/SPEC_TOP_DOWN.md
section 0). Everything compiles with XLA: static shapes, padded instance
tensors with validity masks, no float64."""
