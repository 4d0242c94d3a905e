"""SAM's image encoder: the segment-anything checkpoint layout, numerics against the reference, the loader."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import pytest
import torch

from backend.errors import ModelFileError
from backend.model.networks.sam import SAM_VIT_B, SamImageEncoder, SamViTConfig
from backend.model.sam_weights import SAM_VIT_B_URL, load_sam_image_encoder

TINY = SamViTConfig(
    width=32, depth=4, heads=2, global_blocks=(1, 3), window=2, patch=16, image_size=64, out_channels=16
)


def reference(config: SamViTConfig) -> torch.nn.Module:
    """segment-anything's own ImageEncoderViT with ``config``'s shape (the test's oracle, when installed)."""
    modeling = pytest.importorskip("segment_anything.modeling", reason="segment-anything is not installed")
    return modeling.ImageEncoderViT(
        img_size=config.image_size, patch_size=config.patch, embed_dim=config.width, depth=config.depth,
        num_heads=config.heads, mlp_ratio=config.mlp_ratio, out_chans=config.out_channels,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True, window_size=config.window,
        global_attn_indexes=config.global_blocks,
    )  # fmt: skip


def test_vit_b_has_the_published_checkpoint_layout() -> None:
    with torch.device("meta"):
        ours = {k: tuple(v.shape) for k, v in SamImageEncoder(SAM_VIT_B).state_dict().items()}
    assert ours["patch_embed.proj.weight"] == (768, 3, 16, 16) and ours["pos_embed"] == (1, 64, 64, 768)
    assert ours["blocks.0.attn.rel_pos_h"] == (27, 64) and ours["blocks.2.attn.rel_pos_h"] == (127, 64)
    assert ours["blocks.11.mlp.lin1.weight"] == (3072, 768) and ours["neck.2.weight"] == (256, 256, 3, 3)
    assert sum(1 for k in ours if k.endswith("rel_pos_w")) == 12


def test_vit_b_matches_segment_anythings_layout_key_for_key() -> None:
    with torch.device("meta"):
        ours = {k: tuple(v.shape) for k, v in SamImageEncoder(SAM_VIT_B).state_dict().items()}
        theirs = {k: tuple(v.shape) for k, v in reference(SAM_VIT_B).state_dict().items()}
    assert ours == theirs


def test_the_encoder_computes_what_segment_anything_computes() -> None:
    torch.manual_seed(0)
    theirs = reference(TINY).eval()
    for name, parameter in theirs.named_parameters():
        if "rel_pos" in name:  # zero-initialised there: give the relative positions something to do
            parameter.data.normal_(0, 0.5)
    ours = SamImageEncoder(TINY).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    image = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(image), theirs(image), atol=1e-5)


def test_smaller_inputs_run_with_the_checkpoints_grids() -> None:
    encoder = SamImageEncoder(TINY).eval()
    with torch.no_grad():
        features, tokens = encoder.forward_levels(torch.randn(1, 3, 48, 48))  # a 3 x 3 grid, windows padded
    assert features.shape == (1, 16, 3, 3) and tokens.shape == (1, 32, 3, 3)
    assert torch.isfinite(features).all()


def _checkpoint(tmp_path: Path, encoder: SamImageEncoder, drop: str | None = None) -> Path:
    state = {f"image_encoder.{k}": v for k, v in encoder.state_dict().items() if k != drop}
    state["mask_decoder.iou_token.weight"] = torch.zeros(1, 4)  # the rest of SAM, ignored
    path = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(state, path)
    return path


def test_a_segment_anything_checkpoint_loads_strictly(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = SamImageEncoder(TINY).eval()
    loaded = load_sam_image_encoder(_checkpoint(tmp_path, source), TINY)
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(image), source(image))
    with pytest.raises(ModelFileError, match=r"1 missing \(e\.g\. \['neck\.3\.bias'\]\)"):
        load_sam_image_encoder(_checkpoint(tmp_path, source, drop="neck.3.bias"), TINY)


def test_a_missing_or_hostile_file_is_refused_with_the_way_out(tmp_path: Path) -> None:
    missing = tmp_path / "weights" / "sam_vit_b_01ec64.pth"
    with pytest.raises(ModelFileError) as caught:
        load_sam_image_encoder(missing)
    assert str(missing) in str(caught.value) and SAM_VIT_B_URL in str(caught.value) and "curl -L" in str(caught.value)

    class Hostile:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("touch HACKED",))

    bad = tmp_path / "bad.pth"
    torch.save({"image_encoder.pos_embed": Hostile()}, bad)
    with pytest.raises(ModelFileError, match="not a tensors-only SAM checkpoint"):
        load_sam_image_encoder(bad, TINY)
    assert not Path("HACKED").exists()


def test_the_two_way_transformer_computes_what_segment_anything_computes() -> None:
    from backend.model.networks.two_way import TwoWayTransformer

    modeling = pytest.importorskip("segment_anything.modeling", reason="segment-anything is not installed")
    torch.manual_seed(4)
    theirs = modeling.TwoWayTransformer(depth=2, embedding_dim=32, num_heads=4, mlp_dim=64).eval()
    ours = TwoWayTransformer(depth=2, width=32, heads=4, mlp_width=64).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)  # the same parameter names and shapes
    image, image_pe, tokens = torch.randn(2, 32, 4, 4), torch.randn(2, 32, 4, 4), torch.randn(2, 5, 32)
    with torch.no_grad():
        for mine, reference_out in zip(ours(image, image_pe, tokens), theirs(image, image_pe, tokens), strict=True):
            assert torch.allclose(mine, reference_out, atol=1e-5)


def test_the_two_way_transformer_has_sams_decoder_layout() -> None:
    from backend.model.networks.two_way import TwoWayTransformer

    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in TwoWayTransformer().state_dict().items()}
    assert shapes["layers.0.cross_attn_token_to_image.q_proj.weight"] == (128, 256)  # half width inside
    assert shapes["layers.1.self_attn.q_proj.weight"] == (256, 256) and shapes["layers.1.mlp.lin1.weight"] == (
        2048,
        256,
    )
    assert shapes["final_attn_token_to_image.out_proj.weight"] == (256, 128) and "norm_final_attn.weight" in shapes


def test_the_mask_decoder_computes_what_segment_anything_computes() -> None:
    from backend.model.networks.prompt_decoder import MaskDecoder, mask_downscaling
    from backend.model.networks.two_way import TwoWayTransformer

    modeling = pytest.importorskip("segment_anything.modeling", reason="segment-anything is not installed")
    torch.manual_seed(5)
    theirs = modeling.MaskDecoder(
        transformer_dim=32,
        transformer=modeling.TwoWayTransformer(depth=2, embedding_dim=32, num_heads=4, mlp_dim=64),
    ).eval()
    ours = MaskDecoder(32, TwoWayTransformer(depth=2, width=32, heads=4, mlp_width=64)).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    prompts = modeling.PromptEncoder(embed_dim=32, image_embedding_size=(4, 4), input_image_size=(64, 64),
                                     mask_in_chans=16)  # fmt: skip
    ours_down = mask_downscaling(32)
    ours_down.load_state_dict(prompts.mask_downscaling.state_dict(), strict=True)
    image, image_pe = torch.randn(1, 32, 4, 4), torch.randn(1, 32, 4, 4)
    sparse, coarse = torch.randn(1, 3, 32), torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        dense = ours_down(coarse)
        assert torch.allclose(dense, prompts.mask_downscaling(coarse), atol=1e-6)
        masks, iou = ours(image, image_pe, sparse, dense)
        their_masks, their_iou = theirs(image, image_pe, sparse, dense, multimask_output=True)
    assert torch.allclose(masks[:, 1:], their_masks, atol=1e-5) and torch.allclose(iou[:, 1:], their_iou, atol=1e-5)


def test_the_prompt_change_decoder_refines_and_blends() -> None:
    from backend.model.networks.prompt_decoder import PromptChangeDecoder

    torch.manual_seed(6)
    decoder = PromptChangeDecoder(width=32, text_width=12, passes=3, alpha=0.5)
    image, image_pe = torch.randn(2, 32, 4, 4), torch.randn(1, 32, 4, 4)
    coarse, text = torch.randn(2, 1, 16, 16), torch.randn(2, 2, 12)
    decoder.eval()
    with torch.no_grad():
        out = decoder(image, image_pe, coarse, text)
        decoder.alpha = 0.0
        assert torch.equal(decoder(image, image_pe, coarse, text), coarse)  # alpha 0: the coarse map itself
    assert out.shape == (2, 1, 16, 16) and torch.isfinite(out).all() and not torch.equal(out, coarse)
    decoder.train()
    out = decoder(image, image_pe, coarse, text)
    out.sum().backward()
    assert decoder.text_proj.weight.grad is not None and decoder.mask_downscaling[0].weight.grad is not None
