"""The engine: data, models, objectives, training, checkpoints. Never imports Qt."""
