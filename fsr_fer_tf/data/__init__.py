"""Data sources, LR synthesis and tf.data pipelines."""
