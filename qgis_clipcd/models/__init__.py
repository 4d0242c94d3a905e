"""Model files: the default model's download and store, and reading a card without torch."""
