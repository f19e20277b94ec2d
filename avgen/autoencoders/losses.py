"""Autoencoder losses as small callables: `loss_fn(ae, x, noise=None) -> {"loss": total, <term>: value, ...}` (EDM2
style).

They call `ae(x, noise=noise)` (the module's forward: unclamped reconstruction, posterior mean, logvar; noise: the
posterior draws, see Autoencoder.forward), so `ae` may be a DDP wrapper. Every term is a mean of per-clip values over
the batch (clips of equal shape), so the mean of equal slices' losses is the whole batch's: a batch split over ranks
trains like one process. No trainer logic here. `log_mel_l1` is also the evaluation's definition (tools import it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor | None) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)), averaged per latent element (0 for a deterministic AE).

    Per element, not summed: a weight of 1e-6 here is a much weaker pull than LDM's 1e-6 on sums; the latent scale is
    fixed later by the measured per-channel stats, so the KL only needs to keep the posterior from collapsing to
    arbitrary scales.
    """
    if logvar is None:
        return mean.new_zeros(())
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()


def gradient_l1(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """L1 between image gradients (finite differences along h and w) of (b, c, t, h, w) videos: edges stay sharp."""
    dy = (x_hat.diff(dim=-2) - x.diff(dim=-2)).abs().mean()
    dx = (x_hat.diff(dim=-1) - x.diff(dim=-1)).abs().mean()
    return 0.5 * (dx + dy)


def foreground_weights(x: torch.Tensor, strength: float, margin: float = 0.2) -> torch.Tensor:
    """Per-pixel weights (b, 1, t, h, w) of (b, 3, t, h, w) frames in [-1, 1]: 1 + strength where a pixel's colour
    stands out from its frame's median colour (the background) by `margin` or more (ramped below), widened by one
    pixel so edges count; normalised to mean 1 per clip. Reads the frames only, so it needs no masks: small
    objects and lamps, a few % of the pixels, weigh as much as the background around them."""
    median = x.flatten(3).median(dim=-1).values[..., None, None]  # (b, 3, t, 1, 1)
    distance = (x - median).abs().amax(1, keepdim=True) / 2  # (b, 1, t, h, w), 0..1 of the colour range
    stands_out = (distance / margin).clamp(0, 1)
    stands_out = F.max_pool3d(stands_out, (1, 3, 3), stride=1, padding=(0, 1, 1))
    w = 1 + strength * stands_out
    return w / w.mean(dim=(1, 2, 3, 4), keepdim=True)


class VideoAELoss:
    """L1 + image-gradient L1 (the structural term; cheaper than SSIM on CPU) + KL. foreground > 0 weights the L1
    towards pixels that stand out from the background (foreground_weights)."""

    def __init__(self, l1: float = 1.0, grad: float = 1.0, kl: float = 1e-6, foreground: float = 0.0) -> None:
        self.weights = {"l1": l1, "struct": grad, "kl": kl}
        self.foreground = foreground

    def __call__(self, ae: nn.Module, x: torch.Tensor, noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        x_hat, mean, logvar = ae(x, noise=noise)  # (b, 3, t, h, w), (b, c, t', h', w') x2
        err = (x_hat - x).abs()  # (b, 3, t, h, w)
        l1 = (err * foreground_weights(x, self.foreground)).mean() if self.foreground else err.mean()
        terms = {"l1": l1, "struct": gradient_l1(x_hat, x), "kl": kl_divergence(mean, logvar)}
        terms["loss"] = sum(self.weights[k] * v for k, v in terms.items())
        return terms


def stft_mag(x: torch.Tensor, n_fft: int) -> torch.Tensor:
    """|STFT| of (..., n) with a Hann window and hop n_fft / 4: (..., n_fft/2 + 1, frames)."""
    flat = x.reshape(-1, x.shape[-1])
    window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    spec = torch.stft(flat, n_fft, n_fft // 4, window=window, return_complex=True).abs()
    return spec.reshape(*x.shape[:-1], *spec.shape[-2:])


def event_weights(s: torch.Tensor, strength: float, margin: float = 2.3) -> torch.Tensor:
    """Per-frame weights (..., 1, frames) of a magnitude spectrogram (..., freq, frames): 1 + strength where a frame's
    log energy rises above the clip's median frame (the room tone) by `margin` nats of power or more (2.3 = 10 dB,
    ramped below); normalised to mean 1 per clip. The audio counterpart of foreground_weights: a 30 ms impact or a
    short ping weighs as much as the second of room tone around it."""
    energy = s.square().mean(dim=-2, keepdim=True).clamp_min(1e-10).log()  # (..., 1, frames)
    median = energy.median(dim=-1, keepdim=True).values
    w = 1 + strength * ((energy - median) / margin).clamp(0, 1)
    return w / w.mean(dim=-1, keepdim=True)


QUIET_RMS = 1e-3  # -60 dBFS: below this a clip's spectral convergence is measured against noise of this level


def multi_resolution_stft(x_hat: torch.Tensor, x: torch.Tensor, ffts=(512, 1024, 2048), events: float = 0.0
                          ) -> torch.Tensor:  # fmt: skip
    """Mean over FFT sizes of spectral convergence (||S - S_hat||_F / ||S||_F per clip, dim 0 of x (b, ..., n),
    averaged over clips) + L1 of log magnitudes; events > 0 weights the log-magnitude L1 towards frames above the
    room tone (event_weights of the target)."""
    total = x.new_zeros(())
    clips = x.shape[0] if x.ndim > 1 else 1
    for n_fft in ffts:
        s_hat, s = stft_mag(x_hat, n_fft), stft_mag(x, n_fft)
        norms = torch.linalg.vector_norm((s - s_hat).reshape(clips, -1), dim=1)  # (b,)
        # floor: ||S|| of white noise at -60 dBFS (E|X_k|^2 = rms^2 * sum(hann^2) = rms^2 * 3 n_fft / 8), so a
        # silent clip of a media folder cannot blow the ratio up; avworld's quietest clips sit ~10 dB above it
        floor = QUIET_RMS * (3 * n_fft / 8 * s[0].numel()) ** 0.5
        sc = (norms / torch.linalg.vector_norm(s.reshape(clips, -1), dim=1).clamp_min(floor)).mean()
        err = (s_hat.clamp_min(1e-5).log() - s.clamp_min(1e-5).log()).abs()  # (..., freq, frames)
        total = total + sc + ((err * event_weights(s, events)).mean() if events else err.mean())
    return total / len(ffts)


_MELS: dict[tuple, torchaudio.transforms.MelSpectrogram] = {}


def log_mel(x: torch.Tensor, sample_rate: int, n_fft: int = 1024, hop: int = 256, n_mels: int = 64) -> torch.Tensor:
    """Natural log of mel MAGNITUDES (power=1), clamped at 1e-5: (..., n) -> (..., n_mels, frames).

    torchaudio MelSpectrogram with its defaults otherwise: Hann window of n_fft, center=True with reflect padding,
    HTK mel scale, no filter normalisation, f_min 0, f_max sample_rate / 2.
    """
    key = (int(sample_rate), n_fft, hop, n_mels, str(x.device))
    if key not in _MELS:
        mel = torchaudio.transforms.MelSpectrogram(int(sample_rate), n_fft=n_fft, hop_length=hop, n_mels=n_mels,
                                                   power=1.0)  # fmt: skip
        _MELS[key] = mel.to(x.device)
    return _MELS[key](x.float()).clamp_min(1e-5).log()


def log_mel_l1(a: torch.Tensor, b: torch.Tensor, sr: int) -> torch.Tensor:
    """THE evaluation's log-mel distance: mean |log_mel(a) - log_mel(b)| (n_fft 1024, hop 256, 64 bands, natural log
    of magnitudes clamped at 1e-5). a, b: (..., n) of equal shape. Returns a 0-d tensor."""
    if a.shape != b.shape:
        raise ValueError(f"log_mel_l1 needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    return (log_mel(a, sr) - log_mel(b, sr)).abs().mean()


class AudioAELoss:
    """Multi-resolution STFT + log-mel L1 + waveform L1 + KL. `sample_rate` None: read it from the AE's geometry.
    ffts: the STFT sizes (add 128 / 256 for sharper transients); events > 0 weights the STFT term towards frames
    above the room tone (event_weights)."""

    def __init__(
        self, stft: float = 1.0, mel: float = 1.0, l1: float = 0.1, kl: float = 1e-6, sample_rate: int | None = None,
        ffts: tuple[int, ...] | list[int] = (512, 1024, 2048), events: float = 0.0,
    ) -> None:  # fmt: skip
        self.weights = {"stft": stft, "mel": mel, "l1": l1, "kl": kl}
        self.sample_rate = sample_rate
        self.ffts, self.events = tuple(int(n) for n in ffts), float(events)

    def __call__(self, ae: nn.Module, x: torch.Tensor, noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        sr = self.sample_rate or int(getattr(ae, "module", ae).geometry.input_rate)
        x_hat, mean, logvar = ae(x, noise=noise)  # (b, ch, n), (b, c, n / hop) x2
        terms = {
            "stft": multi_resolution_stft(x_hat, x, self.ffts, self.events),
            "mel": log_mel_l1(x_hat, x, sr),
            "l1": F.l1_loss(x_hat, x),
            "kl": kl_divergence(mean, logvar),
        }
        terms["loss"] = sum(self.weights[k] * v for k, v in terms.items())
        return terms
