"""Intelligibility: which words a clip says, read by an offline speech recogniser restricted to a vocabulary, and the
word error rate against what it should say.

The recogniser is PocketSphinx with the US English acoustic model and pronunciation dictionary inside its PyPI wheel,
searching a JSGF grammar of "one or more words of the vocabulary" (for avworld: vocab.WORDS). A restricted
vocabulary makes chance well above zero: score mismatched transcripts (another clip's words) for the chance level.
Reads samples only.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

ASR_RATE = 16000


@functools.lru_cache(maxsize=4)
def _decoder(words: tuple[str, ...]):
    from pocketsphinx import Config, Decoder

    decoder = Decoder(Config(lm=None, loglevel="FATAL"))
    grammar = "#JSGF V1.0;\ngrammar words;\npublic <utterance> = ( " + " | ".join(words) + " )+ ;\n"
    decoder.add_jsgf_string("words", grammar)
    decoder.activate_search("words")
    return decoder


def recognise(audio: torch.Tensor | np.ndarray, sample_rate: int, words: Sequence[str]) -> list[str]:
    """The words heard in (c, n) or (n,) audio, each one of `words` (lowercase, in the PocketSphinx dictionary)."""
    from scipy.signal import resample_poly

    x = np.asarray(audio.detach().cpu() if isinstance(audio, torch.Tensor) else audio, dtype=np.float64)
    x = x.mean(0) if x.ndim == 2 else x
    if sample_rate != ASR_RATE:
        g = np.gcd(int(sample_rate), ASR_RATE)
        x = resample_poly(x, ASR_RATE // g, int(sample_rate) // g)
    peak = np.abs(x).max()
    pcm = (np.clip(x / peak * 0.9 if peak > 0 else x, -1, 1) * 32767).astype(np.int16)
    decoder = _decoder(tuple(words))
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr.split() if hyp is not None and hyp.hypstr else []


def word_error_rate(references: Sequence[Sequence[str]], hypotheses: Sequence[Sequence[str]]) -> float:
    """WER over a corpus (jiwer: substitutions + deletions + insertions over reference words)."""
    import jiwer

    refs = [" ".join(r) for r in references]
    hyps = [" ".join(h) for h in hypotheses]
    keep = [i for i, r in enumerate(refs) if r]
    if not keep:
        return float("nan")
    return float(jiwer.wer([refs[i] for i in keep], [hyps[i] for i in keep]))


def intelligibility(clips, transcripts: Sequence[Sequence[str]], words: Sequence[str]) -> dict[str, float]:
    """WER of the clips against their transcripts, and against the next clip's transcript (the chance level)."""
    heard = [recognise(c.audio, c.sample_rate, words) for c in clips]
    other = [transcripts[(i + 1) % len(transcripts)] for i in range(len(transcripts))]
    return {"WER": word_error_rate(transcripts, heard), "WER vs other transcripts": word_error_rate(other, heard)}
