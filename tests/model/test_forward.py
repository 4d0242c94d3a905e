import open_clip
import pytest
import torch

from backend.errors import InputError
from backend.model.networks.encoder import DenseAttentionPool, ViTEncoder
from backend.model.networks.text import PromptTextEncoder, tokenize
from tests.model.conftest import TINY_RN, TINY_VIT, pair, tiny_model

SIZES = [(256, 256), (320, 384)]


@pytest.mark.parametrize("family", ["rn", "vit"])
@pytest.mark.parametrize(("h", "w"), SIZES)
def test_forward_shapes_tiny_families(family, h, w):
    model = tiny_model(family)
    with torch.no_grad():
        logits = model(*pair(2, h, w))
    assert logits.shape == (2, 2, h, w)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_forward_shapes_small_config(small_model, h, w):
    with torch.no_grad():
        logits = small_model(*pair(1, h, w))
    assert logits.shape == (1, 2, h, w)
    assert torch.isfinite(logits).all()
    assert logits.std() > 0


def test_rn_levels_and_dense_shapes():
    model = tiny_model("rn")
    feats = model.encoder(pair(1, 256, 320)[0])
    assert [tuple(f.shape[-2:]) for f in feats.levels] == [(64, 80), (32, 40), (16, 20), (8, 10)]
    assert feats.dense.shape == (1, 64, 8, 10) and feats.global_embedding.shape == (1, 64)


def test_vit_levels_are_strides_4_to_32():
    model = tiny_model("vit")
    feats = model.encoder(pair(1, 256, 320)[0])
    assert [tuple(f.shape[-2:]) for f in feats.levels] == [(64, 80), (32, 40), (16, 20), (8, 10)]
    assert feats.dense.shape == (1, 64, 16, 20)


@pytest.mark.parametrize("family", ["rn", "vit"])
def test_gradients_reach_context_tokens_and_both_towers(family):
    model = tiny_model(family).train()
    logits = model(*pair(2, 256, 256), prompts=["building"])
    loss = torch.nn.functional.cross_entropy(logits, torch.randint(0, 2, (2, 256, 256)))
    loss.backward()
    grads = {
        "context": model.text_encoder.contexts.grad,
        "image tower": next(model.encoder.visual.parameters()).grad,
        "text tower": model.text_encoder.token_embedding.weight.grad,
        "text transformer": next(model.text_encoder.transformer.parameters()).grad,
        "gamma": model.context_decoder.gamma.grad,
        "decoder": model.decoder.head[1].weight.grad,
    }
    for name, grad in grads.items():
        assert grad is not None and grad.abs().sum() > 0, name
    assert all(p.grad is None for p in model.miner.parameters())  # the miner stays frozen


def test_outputs_are_deterministic_on_cpu(small_model):
    image_a, image_b = pair(1, 256, 256, seed=5)
    with torch.no_grad():
        first = small_model(image_a, image_b)
        small_model._text_cache.clear()
        second = small_model(image_a, image_b)
    assert torch.equal(first, second)


def test_text_cache_encodes_each_prompt_once_and_follows_weight_changes():
    model = tiny_model("vit")
    calls = []
    encode = model.text_encoder.encode
    model.text_encoder.encode = lambda texts: calls.append(list(texts)) or encode(texts)
    image_a, image_b = pair(2)
    with torch.no_grad():
        before = model(image_a, image_b, prompts=["road"])
        model(image_a, image_b, prompts=["road"])
    assert calls == [["remote sensing image background objects", "remote sensing image foreground objects, road"]]
    with torch.no_grad():
        model.text_encoder.contexts.add_(1.0)
        after = model(image_a, image_b, prompts=["road"])
    assert len(calls) == 2 and not torch.equal(before, after)


def test_bad_input_sizes_say_how_to_fix():
    model = tiny_model("rn")
    with pytest.raises(InputError, match=r"multiples of 32.*256x256"):
        model(torch.zeros(1, 3, 250, 256), torch.zeros(1, 3, 250, 256))
    with pytest.raises(InputError, match="one shape"):
        model(torch.zeros(1, 3, 256, 256), torch.zeros(1, 3, 288, 256))


def test_vit_token_pass_equals_open_clip_forward_intermediates():
    torch.manual_seed(3)
    clip = open_clip.CLIP(**TINY_VIT).eval()
    encoder = ViTEncoder(clip.visual, (0, 1, 2, 3))
    image = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        x, taps, _ = encoder.tokens(image)
        ref = clip.visual.forward_intermediates(image, indices=[0, 1, 2, 3], output_fmt="NLC")
        for mine, theirs in zip(taps, ref["image_intermediates"], strict=True):
            torch.testing.assert_close(mine[:, 1:], theirs)
        torch.testing.assert_close(encoder.embed(x[:, 0]), clip.visual(image))


def test_rn_dense_pool_global_equals_open_clip_attnpool():
    torch.manual_seed(4)
    clip = open_clip.CLIP(**TINY_RN).eval()
    pool = DenseAttentionPool(clip.visual.attnpool)
    x = torch.randn(2, 512, 2, 2)  # the native 2x2 grid of a 64-px input
    with torch.no_grad():
        global_embedding, dense = pool(x)
        torch.testing.assert_close(global_embedding, clip.visual.attnpool(x), rtol=1e-5, atol=1e-5)
    assert dense.shape == (2, 64, 2, 2)


def test_text_encoder_without_context_equals_encode_text():
    torch.manual_seed(5)
    clip = open_clip.CLIP(**TINY_VIT).eval()
    text = PromptTextEncoder(clip, n_ctx=0, length=77)
    ids = tokenize(["a building", "bare land"], 77)
    with torch.no_grad():
        torch.testing.assert_close(text(ids), clip.encode_text(ids))
    with pytest.raises(ValueError, match="exceed"):
        PromptTextEncoder(clip, n_ctx=14, length=64)
