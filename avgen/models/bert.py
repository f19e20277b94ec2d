"""A BERT encoder in plain torch: the text encoder's start-up path.

Importing transformers and building a model through it costs about 4 s on 2 cores, more than generating a clip. A
BERT-family encoder (all-MiniLM-L6-v2, the default) is small enough to write out: embeddings, then post-norm blocks of
self-attention and a GELU MLP. Its weights load straight from model.safetensors under the Hugging Face key names, and
its tokenizer from tokenizer.json through the `tokenizers` package (what transformers' fast tokenizer runs). Anything
else (another architecture, a tokenizer without tokenizer.json) goes through transformers; `load_bert` says which.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
               "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh")}  # fmt: skip


class _Dense(nn.Module):
    """A linear layer, optionally followed by the residual's LayerNorm (the names match the Hugging Face keys)."""

    def __init__(self, d_in: int, d_out: int, eps: float | None = None):
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        if eps is not None:
            self.LayerNorm = nn.LayerNorm(d_out, eps=eps)


class _Layer(nn.Module):
    def __init__(self, d: int, heads: int, d_mlp: int, eps: float, act: str):
        super().__init__()
        self.heads, self.act = heads, ACTIVATIONS[act]
        self.attention = nn.Module()
        self.attention.add_module("self", nn.Module())
        for name in ("query", "key", "value"):
            self.attention.self.add_module(name, nn.Linear(d, d))
        self.attention.output = _Dense(d, d, eps)
        self.intermediate = _Dense(d, d_mlp)
        self.output = _Dense(d_mlp, d, eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x (b, s, d), keep (b, 1, 1, s) bool -> (b, s, d)."""
        b, s, d = x.shape
        qkv = self.attention.self
        q, k, v = (lin(x).view(b, s, self.heads, d // self.heads).transpose(1, 2) for lin in
                   (qkv.query, qkv.key, qkv.value))  # fmt: skip
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep).transpose(1, 2).reshape(b, s, d)
        out = self.attention.output
        x = out.LayerNorm(x + out.dense(a))
        h = self.act(self.intermediate.dense(x))
        return self.output.LayerNorm(x + self.output.dense(h))


class BertEncoder(nn.Module):
    """token ids (b, s) [+ mask (b, s)] -> last hidden states (b, s, hidden_size), as BertModel's last_hidden_state."""

    def __init__(self, config: dict):
        super().__init__()
        d, eps = config["hidden_size"], config.get("layer_norm_eps", 1e-12)
        self.config = config
        self.embeddings = nn.Module()
        self.embeddings.word_embeddings = nn.Embedding(config["vocab_size"], d)
        self.embeddings.position_embeddings = nn.Embedding(config["max_position_embeddings"], d)
        self.embeddings.token_type_embeddings = nn.Embedding(config.get("type_vocab_size", 2), d)
        self.embeddings.LayerNorm = nn.LayerNorm(d, eps=eps)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(
            _Layer(d, config["num_attention_heads"], config["intermediate_size"], eps, config.get("hidden_act", "gelu"))
            for _ in range(config["num_hidden_layers"])
        )

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        e = self.embeddings
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = e.word_embeddings(ids) + e.position_embeddings(positions)[None] + e.token_type_embeddings.weight[0]
        x = e.LayerNorm(x)
        keep = (torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool())[:, None, None, :]
        for layer in self.encoder.layer:
            x = layer(x, keep)
        return x


def supports(directory: Path) -> bool:
    """Whether `directory` holds a BERT this module can run: config, tokenizer.json and model.safetensors."""
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        return False
    plain = (
        config.get("position_embedding_type", "absolute") == "absolute"
        and config.get("hidden_act", "gelu") in ACTIVATIONS
    )
    files = (directory / "tokenizer.json").is_file() and (directory / "model.safetensors").is_file()
    return config.get("model_type") == "bert" and plain and files


def load_bert(directory: Path):
    """(tokenizer, BertEncoder) from a Hugging Face BERT directory that `supports` accepts; frozen, eval mode."""
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    config = json.loads((directory / "config.json").read_text())
    model = BertEncoder(config)
    state = {_key(k): v for k, v in load_file(str(directory / "model.safetensors")).items()}
    state = {k: v for k, v in state.items() if not k.startswith("pooler.") and not k.endswith("position_ids")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{directory}/model.safetensors is not a plain BertModel: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")  # fmt: skip
    model.float().eval().requires_grad_(False)
    return Tokenizer.from_file(str(directory / "tokenizer.json")), model


def _key(name: str) -> str:
    """Hugging Face key names as BertModel loads them: no `bert.` prefix, LayerNorm gamma/beta as weight/bias."""
    name = name.removeprefix("bert.")
    return name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
