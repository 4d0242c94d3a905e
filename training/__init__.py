"""Training and evaluation of the change model; imports backend, never the reverse."""
