"""SpecAware pretraining on DeepSpeed: configuration, learning-rate schedule, the loop, checkpoints, logging."""
