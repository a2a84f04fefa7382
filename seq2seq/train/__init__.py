"""Training: the loop, its learning-rate schedule and device/precision choice."""
