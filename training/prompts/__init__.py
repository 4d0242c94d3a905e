"""Mined prompts: the top-k CLIP class names of every image, computed once and cached."""
