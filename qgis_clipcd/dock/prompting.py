"""What the dock's prompt box does, in one line, for the chosen model and the CLIP weights present.

Prompts act two ways: a model with a text side conditions on them; with CLIP weights, every
change is labelled "before → after" and the prompts keep the changes whose label matches. Plain
Python (no QGIS), so the wording is tested without a dock.
"""

from __future__ import annotations

#: The prompt-match choices (``detect --prompt-match``) as the dock offers them.
MATCH_LABELS = {
    "appeared": "Keep changes that became a prompt",
    "disappeared": "Keep changes that were a prompt",
    "either": "Keep changes that were or became a prompt",
}
_MATCH_WORDS = {"appeared": "became", "disappeared": "were", "either": "were or became"}


def prompts_usable(text_side: bool, clip: str | None) -> bool:
    """Whether typed prompts do anything: the model conditions on them, or CLIP labels filter by them."""
    return text_side or clip is not None


def prompts_note(text_side: bool, automatic: bool, clip: str | None, match: str) -> str:
    """The line under the prompt box.

    Args:
        text_side: The model conditions on prompts (its card's ``accepts_prompts``).
        automatic: "Automatic prompts" is ticked (the model picks class names itself).
        clip: The CLIP weights the engine labels with, or None when there are none.
        match: The prompt-match choice, a key of :data:`MATCH_LABELS`.
    """
    if clip is not None:
        labels = f"CLIP ({clip}) labels each change “before → after”"
        if automatic:
            return f"The model picks class names from each image pair itself; {labels}."
        return f"{labels}; with prompts, only the changes that {_MATCH_WORDS.get(match, 'became')} one are kept."
    if not text_side:
        return (
            "This model does not use prompts: it finds any change. With CLIP weights (the CLIP weights button) "
            "each change is labelled and prompts keep the matching ones."
        )
    if automatic:
        return "The model picks class names from each image pair itself."
    return ""
