import torch
from torch import nn

from backend.model import CHANGECLIP_CLASSES, top_k_names
from backend.model.networks.text import tokenize
from tests.model.conftest import pair, tiny_model


def test_vocabulary_is_the_56_changeclip_classes():
    assert len(CHANGECLIP_CLASSES) == 56 == len(set(CHANGECLIP_CLASSES))
    assert CHANGECLIP_CLASSES[0] == "airport" and CHANGECLIP_CLASSES[-1] == "cabin"


def test_top_k_names_in_order_for_controlled_embeddings():
    names = ["a", "b", "c", "d", "e"]
    classes = torch.eye(5)
    images = torch.tensor([[0.1, 0.5, 0.3, 0.9, 0.0], [1.0, 0.2, 0.1, 0.0, 2.0]])
    assert top_k_names(images, classes, names, 3) == [["d", "b", "c"], ["e", "a", "b"]]
    # cosine, not dot product: scaling a class embedding does not change the ranking
    assert top_k_names(images, classes * torch.tensor([[100.0]] * 5), names, 1) == [["d"], ["e"]]


class FixedEmbedding(nn.Module):
    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, x):
        return self.out[: x.shape[0]]


def test_miner_mines_top_k_per_image_and_date():
    model = tiny_model("vit")
    miner = model.miner
    vocab = len(miner.vocabulary)
    dim = miner.class_embeddings.shape[1]
    classes = torch.zeros(vocab, dim)
    classes[torch.arange(dim), torch.arange(dim)] = 1.0  # class i points along axis i; the rest are 0
    miner.class_embeddings.copy_(classes)
    wanted = torch.zeros(2, dim)
    wanted[0, [3, 7, 1]] = torch.tensor([3.0, 2.0, 1.0])
    wanted[1, [0, 5]] = torch.tensor([1.0, 2.0])
    miner.visual = FixedEmbedding(wanted)
    miner.top_k = 2
    image_a, image_b = pair()
    names_a, names_b = model.prompt_names(image_a, image_b)
    assert names_a == [[miner.vocabulary[3], miner.vocabulary[7]]]
    assert names_b == [[miner.vocabulary[5], miner.vocabulary[0]]]
    model.reuse_a_names_for_b = True
    assert model.prompt_names(image_a, image_b) == (names_a, names_a)


def test_prompt_sources_replace_join_and_default():
    model = tiny_model("rn")
    model.miner.mine = lambda images: [["tree"], ["road"]][: images.shape[0]]
    image_a, image_b = pair()
    assert model.prompt_names(image_a, image_b) == ([["tree"]], [["road"]])
    assert model.prompt_names(image_a, image_b, ["building", " "]) == ([["building"]], [["building"]])
    model.prompt_mode = "join"
    assert model.prompt_names(image_a, image_b, ["building"]) == ([["building", "tree"]], [["building", "road"]])
    model.prompt_mode = "replace"
    model.prompt_source = "default"
    model.default_prompts = ["solar panel"]
    assert model.prompt_names(image_a, image_b) == ([["solar panel"]], [["solar panel"]])
    assert model.prompt_texts(["a", "b"]) == [
        "remote sensing image background objects",
        "remote sensing image foreground objects, a, b",
    ]


def test_tokenizer_works_offline():
    ids = tokenize(["building", "remote sensing image foreground objects, road"], 64)
    assert ids.shape == (2, 64)
    assert ids[0, 0].item() == 49406 and ids[0, 2].item() == 49407  # start, "building", end
