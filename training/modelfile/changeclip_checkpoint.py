"""Read a published ChangeCLIP checkpoint and map its tensors onto the backend's ChangeCLIP.

The reference (dyzy41/ChangeCLIP, an mmseg 1.1.0 fork) saves mmengine checkpoints
``{"meta": ..., "state_dict": ..., "message_hub": ..., "optimizer": ...}``. Its state dict is
listed, name by name, in ``training/manifests/changeclip-{rn50,vit-b16}.json``; :data:`RULES`
renames every entry to the backend's name. The backend's modules have the reference's shapes
and computation, so a renaming suffices except for two value-preserving transforms:

* ``contexts2`` (1, 1, 13, 512) becomes ``text_encoder.contexts`` (1, 13, 512).
* ViT ``backbone.positional_embedding``: the reference adds ``class_embedding`` to the class
  token twice (as the token and inside its positional row), so the backend's row 0 is the
  reference's row 0 plus ``class_embedding``; the class token then gets the same value.

``relative_position_index`` buffers are left out on purpose: the backend derives the same table
(:func:`backend.model.networks.decoder.relative_position_index`); :func:`convert` checks they agree.
"""

from __future__ import annotations

import logging
import math
import pickle  # nosec B403 - only for the exception type; loading goes through torch's weights_only unpickler
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor

from backend.errors import InputError, ModelFileError
from backend.model.networks.decoder import relative_position_index

_log = logging.getLogger(__name__)

_S = r"^decode_head\.layer(?P<n>[1-3])\."  # a decoder stage; {i} is its 0-based index
_B = _S + r"up\.layer\.blocks\.(?P<j>\d+)\."  # a Swin block of that stage
_TS, _TB = "decoder.stages.{i}.", "decoder.stages.{i}.blocks.{j}."
# (reference regex, backend template); the first full match wins. {i} = group n - 1.
RULES: tuple[tuple[str, str], ...] = (
    (r"^contexts2$", "text_encoder.contexts"),
    (r"^gamma$", "context_decoder.gamma"),
    (r"^backbone\.fpn(?P<n>[1-4])\.(?P<rest>.+)$", "encoder.fpn.{i}.{rest}"),
    (r"^backbone\.(?P<rest>.+)$", "encoder.visual.{rest}"),
    (r"^text_encoder\.(?P<rest>.+)$", "text_encoder.{rest}"),
    (r"^context_decoder\.decoder\.(?P<rest>.+)$", "context_decoder.layers.{rest}"),
    (r"^context_decoder\.(?P<rest>.+)$", "context_decoder.{rest}"),
    (r"^neck\.lateral_convs\.(?P<j>\d+)\.conv\.(?P<rest>.+)$", "fusion.fpn.lateral.{j}.{rest}"),
    (r"^neck\.fpn_convs\.(?P<j>\d+)\.conv\.(?P<rest>.+)$", "fusion.fpn.output.{j}.{rest}"),
    (r"^minus_conv\.(?P<j>\d+)\.conv\.(?P<rest>.+)$", "fusion.minus.{j}.0.{rest}"),
    (r"^channel_att\.(?P<j>\d+)\.conv1\.conv\.(?P<rest>.+)$", "fusion.se.{j}.gate.1.{rest}"),
    (r"^channel_att\.(?P<j>\d+)\.conv2\.conv\.(?P<rest>.+)$", "fusion.se.{j}.gate.3.{rest}"),
    (r"^channel_att\.(?P<j>\d+)\.conv_last\.conv\.(?P<rest>.+)$", "fusion.se.{j}.project.0.{rest}"),
    (r"^decode_head\.conv_seg\.(?P<rest>.+)$", "decoder.head.1.{rest}"),
    (r"^decode_head\.linearA\.(?P<rest>.+)$", "decoder.text_a.{rest}"),
    (r"^decode_head\.linearB\.(?P<rest>.+)$", "decoder.text_b.{rest}"),
    (_S + r"up\.up\.up\.1\.(?P<rest>.+)$", _TS + "up.0.{rest}"),  # up_conv: Upsample, Conv, GN, ReLU
    (_S + r"up\.up\.up\.2\.(?P<rest>.+)$", _TS + "up.1.{rest}"),
    (_S + r"up\.conv_relu\.0\.(?P<rest>.+)$", _TS + "after.0.{rest}"),
    (_S + r"conv2\.0\.(?P<rest>.+)$", _TS + "skip.0.{rest}"),
    (_S + r"conv_relu\.0\.(?P<rest>.+)$", _TS + "merge.0.{rest}"),
    (_B + r"attn\.relative_position_bias_table$", _TB + "bias_table"),
    (_B + r"attn\.qkv\.(?P<rest>.+)$", _TB + "qkv.{rest}"),
    (_B + r"attn\.proj\.(?P<rest>.+)$", _TB + "proj.{rest}"),
    (_B + r"(?P<norm>norm[12])\.(?P<rest>.+)$", _TB + "{norm}.{rest}"),
    (_B + r"mlp\.fc1\.(?P<rest>.+)$", _TB + "mlp.0.{rest}"),
    (_B + r"mlp\.fc2\.(?P<rest>.+)$", _TB + "mlp.2.{rest}"),
    (_B + r"proj\.(?P<rest>.+)$", _TB + "text.out.{rest}"),  # the block's 256 -> 128 text projection
    (_B + r"low_rank_bilinear\.WQ\.(?P<rest>.+)$", _TB + "text.q.{rest}"),
    (_B + r"low_rank_bilinear\.WK\.(?P<rest>.+)$", _TB + "text.k.{rest}"),
    (_B + r"low_rank_bilinear\.WV\.(?P<rest>.+)$", _TB + "text.v.{rest}"),
)
UNUSED: tuple[tuple[str, str], ...] = (
    (
        r"\.attn\.relative_position_index$",
        "constant index table of the window attention; the backend derives the same table (checked equal)",
    ),
)
_COMPILED = [(re.compile(pattern), template) for pattern, template in RULES]
_UNUSED = [(re.compile(pattern), reason) for pattern, reason in UNUSED]
FAMILY_MARKERS = {
    "backbone.attnpool.positional_embedding": "changeclip-rn50",
    "backbone.class_embedding": "changeclip-vit-b16",
}


def backend_name(reference_name: str) -> str | None:
    """The backend tensor a reference tensor fills, or None when no rule covers it."""
    for pattern, template in _COMPILED:
        match = pattern.match(reference_name)
        if match:
            groups = match.groupdict()
            if groups.get("n") is not None:
                groups["i"] = str(int(groups["n"]) - 1)
            return template.format(**groups)
    return None


def unused_reason(reference_name: str) -> str | None:
    """Why a reference tensor is left out on purpose, or None."""
    return next((reason for pattern, reason in _UNUSED if pattern.search(reference_name)), None)


def _contexts(tensor: Tensor, _: Mapping[str, Tensor]) -> Tensor:
    return tensor.reshape(1, *tensor.shape[-2:])


def _vit_positions(tensor: Tensor, reference: Mapping[str, Tensor]) -> Tensor:
    out = tensor.clone()
    out[0] = out[0] + reference["backbone.class_embedding"].to(out.dtype)
    return out


TRANSFORMS: dict[str, tuple[Callable[[Tensor, Mapping[str, Tensor]], Tensor], str]] = {
    "contexts2": (_contexts, "reshaped (1, 1, n, w) -> (1, n, w)"),
    "backbone.positional_embedding": (
        _vit_positions,
        "class_embedding folded into row 0 (the reference adds it twice)",
    ),
}


@dataclass
class Conversion:
    """The outcome of :func:`convert`."""

    tensors: dict[str, Tensor] = field(default_factory=dict)  # backend name -> value
    sources: dict[str, str] = field(default_factory=dict)  # backend name -> reference name
    transformed: dict[str, str] = field(default_factory=dict)  # reference name -> what was done
    unused: dict[str, str] = field(default_factory=dict)  # reference name -> reason
    unmapped: list[str] = field(default_factory=list)  # reference names that fill nothing
    unfilled: list[str] = field(default_factory=list)  # backend names nothing filled
    problems: list[str] = field(default_factory=list)  # shape mismatches, failed checks


def convert(reference: Mapping[str, Tensor], expected: Mapping[str, tuple[int, ...]]) -> Conversion:
    """Map a reference state dict onto backend names; ``expected`` gives the backend's shapes."""
    result = Conversion()
    for name, tensor in reference.items():
        reason = unused_reason(name)
        if reason is not None:
            result.unused[name] = reason
            if name.endswith("relative_position_index") and not _index_matches(tensor):
                result.problems.append(f"{name}: not the standard Swin index table; the backend's attention differs")
            continue
        target = backend_name(name)
        if target is None or target not in expected:
            result.unmapped.append(name if target is None else f"{name} (-> {target}, which the backend lacks)")
            continue
        if name in TRANSFORMS:
            transform, what = TRANSFORMS[name]
            tensor = transform(tensor, reference)
            result.transformed[name] = what
        if tuple(tensor.shape) != tuple(expected[target]):
            result.problems.append(
                f"{name} -> {target}: shape {tuple(tensor.shape)}, backend {tuple(expected[target])}"
            )
            continue
        if target in result.sources:
            result.problems.append(f"{name} and {result.sources[target]} both map to {target}")
            continue
        result.tensors[target], result.sources[target] = tensor, name
    result.unfilled = [name for name in expected if name not in result.tensors]
    return result


def _index_matches(tensor: Tensor) -> bool:
    window = math.isqrt(tensor.shape[0]) if tensor.ndim == 2 else 0
    if window < 1 or tensor.shape != (window * window, window * window):
        return False
    return tensor.is_meta or bool(torch.equal(tensor.long().cpu(), relative_position_index(window)))


def detect_family(reference: Mapping[str, Tensor]) -> str | None:
    """``"changeclip-rn50"`` or ``"changeclip-vit-b16"`` from the backbone's tell-tale tensors."""
    return next((config for key, config in FAMILY_MARKERS.items() if key in reference), None)


# -- reading ---------------------------------------------------------------------------------------------
_RESAVE = (
    're-save just its state dict where mmengine is installed, for a file you trust: python -c "import torch; '
    "c = torch.load('{path}', weights_only=False); torch.save(c['state_dict'], '{path}.state_dict.pth')\" "
    "and import {path}.state_dict.pth"
)


class _Inert:
    """Stand-in for a non-tensor object in a checkpoint's bookkeeping: takes anything, keeps and runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        del args, kwargs

    def __setstate__(self, state: Any) -> None:
        del state


def _stand_in(qualified: str) -> type:
    module, _, name = qualified.rpartition(".")
    return type(name, (_Inert,), {"__module__": module, "__qualname__": name})


def read_checkpoint(path: Path) -> dict[str, Tensor]:
    """The tensors of a ChangeCLIP checkpoint's state dict (mmengine file, bare state dict or safetensors).

    Pickled checkpoints are read by ``torch.load(weights_only=True)`` only. Classes of the
    checkpoint's bookkeeping (mmengine's ``HistoryBuffer`` in ``message_hub``, numpy values) are
    allowed as inert stand-ins: the real classes are never imported or run, so nothing in the file
    executes; a stand-in inside the state dict itself is refused.

    Raises:
        InputError: The file is missing.
        ModelFileError: Unreadable, refused by the weights-only unpickler, or no state dict of tensors.
    """
    if not path.is_file():
        raise InputError(f"checkpoint {path} not found; download it from the link in ChangeCLIP's README")
    if path.suffix == ".safetensors":
        raw: Any = load_file(str(path), device="cpu")
    else:
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except (RuntimeError, ValueError, OSError, pickle.UnpicklingError):
            unsafe = []  # not a zip checkpoint: the weights-only loader decides alone
        if unsafe:
            _log.info("reading %s with inert stand-ins for %s", path.name, ", ".join(sorted(unsafe)))
        try:
            with torch.serialization.safe_globals([_stand_in(name) for name in unsafe]):
                raw = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, OSError, ValueError, EOFError, TypeError, AttributeError) as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
            reason = next((line for line in lines if line.startswith("Unsupported")), lines[0])
            raise ModelFileError(
                f"torch.load(weights_only=True) refused {path} ({reason}); nothing was unpickled. To import it, "
                + _RESAVE.format(path=path)
            ) from exc
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else raw
    if not isinstance(state, dict) or not state:
        raise ModelFileError(f"{path} holds no state dict (found {type(state).__name__}); " + _RESAVE.format(path=path))
    tensors: dict[str, Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, Tensor):
            raise ModelFileError(f"{path}: state dict entry {key!r} is a {type(value).__name__}, not a tensor")
        tensors[str(key).removeprefix("module.")] = value
    return tensors
