"""Training data: a config's data sources to crops, batches and augmentations."""
