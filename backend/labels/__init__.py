"""Labels for change polygons: CLIP names each polygon's before and after, and prompts filter them."""
