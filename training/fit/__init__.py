"""The training run: config, model, optimiser, one or many processes, checkpoints, log and validation."""
