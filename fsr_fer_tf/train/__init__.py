"""Training steps (tf.function) and the loop that owns logging and checkpoints."""
