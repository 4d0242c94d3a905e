"""Build open_clip CLIPs and load CLIP weights without ever unpickling code.

Weights come from the CLIP catalogue or ``clip add`` (:mod:`backend.clip`), an open_clip tag
(downloaded on a machine with internet) or a local file:

* ``.safetensors``: read with safetensors.
* open_clip ``.bin`` / ``.pt`` / ``.pth`` state dicts: ``torch.load(weights_only=True)``.
* OpenAI JIT ``.pt`` archives (TorchScript zips): torch refuses ``weights_only`` for these and
  open_clip falls back to ``torch.jit.load``, which compiles the archive's TorchScript code. We do
  neither: :func:`read_torchscript_tensors` reads the archive's ``data.pkl`` with a restricted
  unpickler that resolves no global except storage dtypes, a local tensor rebuild function and a
  plain attribute holder for ``__torch__`` objects, so only tensors come out.

All three land in :func:`load_clip_weights`, the same path for real and test weights. A tower
built for another input size than the checkpoint's (ChangeCLIP's RN50 pools a 16x16 grid, its
ViT-B/16 takes 256 px) gets the image positional embedding resized bilinearly at load, as
ChangeCLIP's loaders do; nothing else may differ.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import math
import pickle  # nosec B403
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import open_clip
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from backend.clip import store as clip_store
from backend.clip.catalogue import catalogue, for_tag
from backend.download import DownloadError
from backend.errors import InputError, ModelFileError
from backend.model.config import ClipSpec

_logger = logging.getLogger(__name__)
_JIT_EXTRAS = ("input_resolution", "context_length", "vocab_size")
_IMAGE_POSITIONS = ("visual.positional_embedding", "visual.attnpool.positional_embedding")


def build_clip(spec: ClipSpec, *, init: bool = True) -> open_clip.CLIP:
    """Build the open_clip ``CLIP`` for ``spec`` with random weights (the class create_model builds).

    ``init=False`` skips the random initialisation (a ViT-B/16 takes most of a second on a CPU)
    and leaves the parameters' memory as it comes: only for a CLIP whose every tensor is loaded
    next, which :func:`load_clip_weights` checks.
    """
    cfg = copy.deepcopy(spec.cfg) if spec.cfg is not None else open_clip.get_model_config(spec.model)
    if cfg is None:
        raise InputError(f"open_clip has no model config {spec.model!r}; see open_clip.list_models()")
    unsupported = {"custom_text", "multimodal_cfg"} & set(cfg)
    vision, text = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    if unsupported or "timm_model_name" in vision or "hf_model_name" in text:
        raise InputError(f"open_clip model {spec.model!r} is not a plain CLIP (timm/HF/CoCa towers are unsupported)")
    if init:
        return open_clip.CLIP(**cfg)
    with _no_init():
        return open_clip.CLIP(**cfg)


_INITS = ("normal_", "uniform_", "kaiming_uniform_", "trunc_normal_", "xavier_uniform_", "zeros_", "ones_", "constant_")


@contextlib.contextmanager
def _no_init() -> Iterator[None]:
    """``torch.nn.init``'s fill functions do nothing inside (each returns its tensor untouched)."""
    saved = {name: getattr(torch.nn.init, name) for name in _INITS}
    try:
        for name in _INITS:
            setattr(torch.nn.init, name, lambda tensor, *_, **__: tensor)
        yield
    finally:
        for name, function in saved.items():
            setattr(torch.nn.init, name, function)


def resolve_weights(spec: ClipSpec, pretrained: str, *, fetch: bool = True) -> Path:
    """Turn ``pretrained`` into a local, checked file.

    ``pretrained`` is a local file; a name from the CLIP catalogue or given to ``clip add``
    (``python -m backend clip list``); or an open_clip weight tag. The tag ``openai`` is the
    catalogue's OpenAI file for the architecture, so every part of ClipCD uses the same files;
    other tags are downloaded by open_clip. A catalogue file that is absent is fetched (with
    resume and its sha256) unless ``fetch`` is False.

    Raises:
        InputError: The named weights are another architecture than ``spec``'s.
        ModelFileError: Not a file, name or tag; absent and not fetched (the message names
            ``clip get`` and ``clip add``); or the download failed.
    """
    path = Path(pretrained).expanduser()
    if path.is_file():
        return path
    name = pretrained
    listed = catalogue().get(pretrained) or for_tag(spec.model, pretrained)
    if listed is not None:
        name = listed.name
    present = clip_store.find(name)
    if present is not None:
        _check_arch(spec, name, present.arch)
        return present.path
    if listed is not None:
        _check_arch(spec, name, listed.arch)
        if not fetch:
            raise clip_store.missing_error(name)
        try:
            return clip_store.fetch(name).path
        except DownloadError as exc:
            raise ModelFileError(f"{exc} {clip_store.missing_error(name)}") from exc
    cfg = open_clip.get_pretrained_cfg(spec.model, pretrained)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(spec.model)
        raise ModelFileError(
            f"pretrained={pretrained!r} is neither a file, a CLIP catalogue name ({', '.join(catalogue())}"
            f"), nor an open_clip weight tag for {spec.model!r} (tags: {tags}); `python -m backend clip list` "
            "shows the catalogue and what is on this computer"
        )
    try:
        return Path(open_clip.download_pretrained(cfg))
    except Exception as exc:
        raise ModelFileError(
            f"could not download the {spec.model!r} weights {pretrained!r} ({exc}); on a machine without "
            "internet, copy a CLIP file here and run `python -m backend clip add FILE --arch ARCH`, or pass its path"
        ) from exc


def _check_arch(spec: ClipSpec, name: str, arch: str) -> None:
    """Refuse weights of another open_clip architecture (inline configs are checked tensor by tensor at load)."""
    if spec.cfg is None and spec.model.removesuffix("-quickgelu") != arch.removesuffix("-quickgelu"):
        raise InputError(f"the CLIP weights {name!r} are a {arch} model; this model's CLIP is {spec.model}")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a CLIP checkpoint into a float32 state dict; see the module docstring for formats.

    Raises:
        ModelFileError: Missing, unreadable or pickled with anything but tensors.
    """
    if not path.is_file():
        raise ModelFileError(f"checkpoint {path} not found")
    try:
        if path.suffix == ".safetensors":
            raw: Any = load_file(str(path), device="cpu")
        elif zipfile.is_zipfile(path) and _is_torchscript(path):
            raw = read_torchscript_tensors(path)
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except ModelFileError:
        raise
    except (pickle.UnpicklingError, RuntimeError, OSError, ValueError, EOFError) as exc:
        raise ModelFileError(
            f"{path} is not a tensors-only checkpoint ({exc}); only safetensors, weights-only torch state "
            "dicts and OpenAI JIT archives are read, nothing is unpickled"
        ) from exc
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict):
        raise ModelFileError(f"{path} holds a {type(raw).__name__}, not a state dict")
    out = {}
    for key, value in raw.items():
        if not isinstance(value, torch.Tensor) or key in _JIT_EXTRAS:
            continue
        key = key.removeprefix("module.")
        out[key] = value.float() if value.is_floating_point() else value
    return out


def load_clip_weights(clip: open_clip.CLIP, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state_dict`` into ``clip``, refusing missing, extra or mis-shaped tensors.

    Accepts the OpenAI / open_clip ``CLIP`` layout and the custom-text layout (``text.*``).
    """
    sd = {(k[5:] if k.startswith("text.") and not k.startswith("text_") else k): v for k, v in state_dict.items()}
    if "logit_scale" in sd:
        sd["logit_scale"] = sd["logit_scale"].reshape(clip.logit_scale.shape)
    if clip.logit_bias is None:
        sd.pop("logit_bias", None)
    persistent = clip.state_dict()
    for name, _ in clip.named_buffers():
        if name not in persistent:  # non-persistent buffers (attn_mask) that TorchScript archives keep
            sd.pop(name, None)
    for name in _IMAGE_POSITIONS:
        if name in sd and name in persistent and sd[name].shape != persistent[name].shape:
            sd[name] = resize_positions(sd[name], persistent[name].shape, f"{source}: {name}")
    check_tensors(persistent, sd, source)
    clip.load_state_dict(sd, strict=True)
    _logger.info("loaded CLIP weights from %s", source)


def resize_positions(pos: torch.Tensor, shape: torch.Size, what: str) -> torch.Tensor:
    """Resize a (1 + s*s, C) class-plus-grid positional embedding to ``shape`` (bilinear, class row kept).

    Raises:
        ModelFileError: Not a square grid of the same width.
    """
    side, target = math.isqrt(pos.shape[0] - 1), math.isqrt(shape[0] - 1)
    square = side**2 + 1 == pos.shape[0] and target**2 + 1 == shape[0]
    if not square or pos.ndim != 2 or len(shape) != 2 or pos.shape[1] != shape[1]:
        raise ModelFileError(f"{what}: positional embedding {tuple(pos.shape)} cannot be resized to {tuple(shape)}")
    grid = pos[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(target, target), mode="bilinear", align_corners=False)
    _logger.info("%s: positional grid resized %dx%d -> %dx%d", what, side, side, target, target)
    return torch.cat([pos[:1].float(), grid.permute(0, 2, 3, 1).reshape(target * target, -1)]).to(pos.dtype)


def check_tensors(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor], source: str) -> None:
    """Raise :class:`ModelFileError` naming missing, unexpected and mis-shaped tensors."""
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    shapes = [
        f"{k}: file {tuple(got[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(got))
        if got[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[:4]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:4]})")
    if shapes:
        problems.append(f"{len(shapes)} with other shapes (e.g. {shapes[:3]})")
    if problems:
        raise ModelFileError(f"the tensors in {source} do not match the model: " + "; ".join(problems))


def _is_torchscript(path: Path) -> bool:
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in archive.namelist())


class _ScriptObject:
    """Holds the attributes of one ``__torch__`` object from a TorchScript archive."""

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _rebuild_tensor(
    storage: torch.Tensor, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any
) -> torch.Tensor:
    return storage.as_strided(size, stride, offset).clone()


class _TensorOnlyUnpickler(pickle.Unpickler):
    """Resolves storage dtypes, a tensor rebuild and ``__torch__`` attribute holders; nothing else."""

    _DTYPES: ClassVar[dict[str, torch.dtype]] = {
        "FloatStorage": torch.float32,
        "HalfStorage": torch.float16,
        "BFloat16Storage": torch.bfloat16,
        "DoubleStorage": torch.float64,
        "LongStorage": torch.int64,
        "IntStorage": torch.int32,
        "BoolStorage": torch.bool,
        "ByteStorage": torch.uint8,
    }

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(io.BytesIO(data))
        self._archive, self._prefix = archive, prefix

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in self._DTYPES:
            return self._DTYPES[name]
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "collections" and name == "OrderedDict":
            return dict
        if module.startswith("__torch__"):
            return _ScriptObject
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        _, dtype, key, _location, numel = pid
        raw = bytearray(self._archive.read(f"{self._prefix}/data/{key}"))
        return torch.frombuffer(raw, dtype=dtype, count=numel) if numel else torch.empty(0, dtype=dtype)


def read_torchscript_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Named tensors (parameters and buffers) of a TorchScript archive, read without TorchScript."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        data_pkl = next((n for n in names if n.endswith("/data.pkl") and n.count("/") == 1), None)
        if data_pkl is None:
            raise ModelFileError(f"{path} is a zip without data.pkl; not a TorchScript archive")
        prefix = data_pkl.split("/")[0]
        root = _TensorOnlyUnpickler(archive.read(data_pkl), archive, prefix).load()
    out: dict[str, torch.Tensor] = {}
    _collect(root, "", out)
    return out


def _collect(obj: Any, name: str, out: dict[str, torch.Tensor]) -> None:
    if isinstance(obj, torch.Tensor):
        out[name] = obj
    elif isinstance(obj, _ScriptObject) and isinstance(getattr(obj, "state", None), dict):
        for key, value in obj.state.items():
            _collect(value, f"{name}.{key}" if name else str(key), out)
