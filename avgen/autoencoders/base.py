"""The interface both autoencoders implement, and the geometry they declare as data.

An autoencoder maps media to latents and back:
    video (b, 3, t, h, w) in [-1, 1]  <->  z (b, c, t', h', w')
    audio (b, c, n)       in [-1, 1]  <->  z (b, c, n')
Its `AEGeometry` says how: the input rate, the strides, the latent channels, causality.
Everything downstream (token counts, token times, rate compatibility) is derived from it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any


@dataclass(frozen=True)
class AEGeometry:
    """How an autoencoder samples time (and space).

    input_rate: frames per second (video) or samples per second (audio), exact.
    time_stride: input steps per latent step.
    spatial_stride: pixels per latent cell along h and w (1 for audio).
    latent_channels: channels of z.
    causal: if True the first latent covers one input step and each later one `time_stride`
        steps, so inputs have 1 + m * time_stride steps (m >= 0); otherwise m * time_stride (m >= 1).
    """

    input_rate: Fraction
    time_stride: int
    spatial_stride: int
    latent_channels: int
    causal: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_rate", Fraction(self.input_rate))
        if self.input_rate <= 0 or self.time_stride < 1 or self.spatial_stride < 1 or self.latent_channels < 1:
            raise ValueError(f"invalid AEGeometry {self}")

    @property
    def latent_rate(self) -> Fraction:
        """Latent steps per second."""
        return self.input_rate / self.time_stride

    def latent_length(self, input_length: int) -> int:
        """Latent steps for an input of `input_length` steps; raises if the geometry can't take it."""
        self.check_length(input_length)
        if self.causal:
            return 1 + (input_length - 1) // self.time_stride
        return input_length // self.time_stride

    def input_length(self, latent_length: int) -> int:
        """Input steps that decode from `latent_length` latent steps."""
        if latent_length < 1:
            raise ValueError(f"latent length must be >= 1, got {latent_length}")
        if self.causal:
            return 1 + (latent_length - 1) * self.time_stride
        return latent_length * self.time_stride

    def valid_lengths(self, around: int, count: int = 3) -> list[int]:
        """A few accepted input lengths near `around`, for error messages."""
        m = max(1, round((around - (1 if self.causal else 0)) / self.time_stride))
        return [self.input_length(k) for k in range(max(1, m - 1), max(1, m - 1) + count)]

    def check_length(self, input_length: int) -> None:
        ok = (
            (input_length - 1) % self.time_stride == 0 and input_length >= 1
            if self.causal
            else input_length % self.time_stride == 0 and input_length >= self.time_stride
        )
        if not ok:
            form = f"1 + m*{self.time_stride}" if self.causal else f"m*{self.time_stride} (m >= 1)"
            raise ValueError(
                f"input length {input_length} does not fit this autoencoder (time stride {self.time_stride}, "
                f"causal={self.causal}): lengths must be {form}, e.g. {self.valid_lengths(input_length)}"
            )

    def check_size(self, h: int, w: int) -> None:
        s = self.spatial_stride
        if h % s or w % s:
            raise ValueError(
                f"frame size {h}x{w} does not fit this autoencoder: height and width must be multiples of {s}"
            )

    def duration_length(self, seconds: float | Fraction) -> int:
        """Input steps for a duration in seconds; raises if it is not a whole number of steps."""
        steps = Fraction(seconds).limit_denominator(1_000_000) * self.input_rate
        if steps.denominator != 1:
            raise ValueError(f"{seconds} s is not a whole number of input steps at {self.input_rate} per second")
        return int(steps)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_rate"] = str(self.input_rate)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AEGeometry:
        d = dict(d)
        d["input_rate"] = Fraction(d["input_rate"])
        return cls(**d)

    def __str__(self) -> str:
        return (
            f"AEGeometry(rate={self.input_rate}/s, time_stride={self.time_stride}, spatial={self.spatial_stride}, "
            f"c={self.latent_channels}, causal={self.causal}, latent_rate={self.latent_rate}/s)"
        )


def gcd_rate(a: Fraction, b: Fraction) -> Fraction:
    """Largest rate r such that a/r and b/r are both whole numbers."""
    return Fraction(math.gcd(a.numerator * b.denominator, b.numerator * a.denominator), a.denominator * b.denominator)
