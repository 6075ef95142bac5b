"""Training: strategy selection, optimizer and schedule, the train loop,
checkpoints and summaries, driven by Gin from `trainer.py`."""
