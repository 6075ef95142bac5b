"""Per-pixel losses shared by model families: bootstrapped cross-entropy,
weighted squared error and L1, each reduced to one value per image."""
from deeplab2.losses.pixel_losses import (CenterHeatmapMSE, OffsetL1,
                                          WeightedBootstrappedCrossEntropy,
                                          weighted_top_k_mean)
