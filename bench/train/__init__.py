"""Training: build a method's model, the training step, the epoch loop with selection and checkpoints."""
