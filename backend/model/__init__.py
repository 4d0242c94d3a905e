"""The model package: ChangeCLIP, zero-shot CLIP change, configs and the model file.

Public API::

    list_models() -> list[str]
    create_model(name, pretrained=None, *, miner_pretrained=None, **overrides) -> ChangeCLIP | ZeroShotChange
    save_model(model, card, path); load_model(path, device="cpu") -> (model, ModelCard)
    build_card(model, ...) -> ModelCard; card_to_json / card_from_json; read_card(path)
    model_summary(model, size=256) -> dict

A model is called as ``model(image_a, image_b, prompts=None) -> logits (B, 2, H, W)``.
"""

from backend.model.config import ModelConfig, get_config
from backend.model.factory import build_model, create_model, list_models
from backend.model.modelfile import (
    FORMAT_VERSION,
    ModelCard,
    build_card,
    card_from_json,
    card_to_json,
    load_model,
    read_card,
    save_model,
)
from backend.model.networks.changeclip import ChangeCLIP
from backend.model.networks.zeroshot import ZeroShotChange
from backend.model.prompts import CHANGECLIP_CLASSES, PromptMiner, top_k_names
from backend.model.summary import model_summary

__all__ = [
    "CHANGECLIP_CLASSES",
    "FORMAT_VERSION",
    "ChangeCLIP",
    "ModelCard",
    "ModelConfig",
    "PromptMiner",
    "ZeroShotChange",
    "build_card",
    "build_model",
    "card_from_json",
    "card_to_json",
    "create_model",
    "get_config",
    "list_models",
    "load_model",
    "model_summary",
    "read_card",
    "save_model",
    "top_k_names",
]
