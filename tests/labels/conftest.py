"""The labelling tests use the CLIP weights tests' tiny CLIP file."""

from tests.clip.conftest import tiny_arch, tiny_clip

__all__ = ["tiny_arch", "tiny_clip"]
