"""Trains and evaluates Panoptic-DeepLab from Gin configs; see deeplab2/training/main.py."""
from deeplab2.training.main import run

if __name__ == "__main__":
    run()
