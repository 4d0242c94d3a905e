"""The commands: ``python -m backend detect|doctor|models|info`` and ``make demo``."""
