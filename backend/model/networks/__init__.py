"""The networks: ChangeCLIP and its parts, the siamese EfficientNet-Lite network, zero-shot CLIP change."""
