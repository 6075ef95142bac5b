"""Losses of Panoptic-DeepLab: bootstrapped cross-entropy, center MSE, offset L1."""
from deeplab2.losses.panoptic_deeplab_loss import PanopticDeepLabLoss
from deeplab2.losses.pixel_losses import (CenterHeatmapMSE, OffsetL1,
                                          WeightedBootstrappedCrossEntropy,
                                          weighted_top_k_mean)
