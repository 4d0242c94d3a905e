"""CLIP weights on the user's machine: the catalogue, the cache, ``clip list | get | add | remove``."""
