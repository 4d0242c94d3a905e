"""The tile run: the processing grid cut into tiles, each through the model, the change logits handed on."""
