"""Scripts: who says what, and when. Lines of text, each optionally anchored to a time span of the clip.

One line a line of text, `[START[-END]] [SPEAKER:] TEXT`:

    a kitchen, two people at a table          untimed: describes the whole clip (every token may read it)
    0.2-1.1 left: says 'apple seven'          from 0.2 s to 1.1 s, spoken by "left"
    1.3-2.0 right: says 'hello river'
    1.5 a knock                               a point event: [1.5, 1.5 + POINT_SPAN] seconds

Times are decimal seconds >= 0 (no exponents), END > START; a line whose first word is a number is timed. SPEAKER is
one word (letters, digits, _ or -, starting with a letter) right before ':' and a space. Blank lines and lines
starting with '#' are skipped. A plain prompt is a script of one untimed line (Script.from_prompt).

The text encoder reads each line (`encoder_text`: "speaker: text") on its own; the DiT lets an AV token attend to a
timed line's text tokens only where the token's time span overlaps the line's (avgen.tokens.AVTokenLayout).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from avgen.errors import InputError

POINT_SPAN = 0.25  # seconds a line with a start only ("1.5 a knock") spans
FIELDS = ("text", "start", "end", "speaker")
SPEAKER = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
SPEAKER_PREFIX = re.compile(r"(?P<speaker>[A-Za-z][A-Za-z0-9_-]*):(?:\s+|$)")
TIME_FIELD = re.compile(r"[0-9.+-]*[0-9][0-9.+-]*")  # a first word made of digits, '.', '-', '+': a time
NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
EXAMPLE = "0.2-1.1 left: says 'apple seven'"


def seconds_text(x: float) -> str:
    """Seconds as the file form writes them: the shortest exact decimal, no exponent (1.0 -> "1")."""
    return np.format_float_positional(float(x), trim="-")


@dataclass(frozen=True)
class ScriptLine:
    """One line: its text, optionally a start (and end) in seconds and who says it."""

    text: str
    start: float | None = None
    end: float | None = None
    speaker: str | None = None

    def __post_init__(self) -> None:
        """Checks the fields; the message names the field and what to change (the caller adds where the line is)."""
        if not isinstance(self.text, str) or not self.text.strip():
            raise InputError("the line has no text: write what is seen or heard after the time and speaker")
        if "\n" in self.text or "\r" in self.text:
            raise InputError("the text has a line break: one line of the script is one line of text")
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"the {name} {value!r} is not a number of seconds")
            if value < 0:
                raise InputError(f"the {name} {seconds_text(value)} s is negative: times count from 0 s")
            object.__setattr__(self, name, float(value))
        if self.end is not None and self.start is None:
            raise InputError(f"the end {seconds_text(self.end)} s has no start: give both, or only a start")
        if self.end is not None and self.end <= self.start:
            where = "before" if self.end < self.start else "equal to"
            raise InputError(f"the end {seconds_text(self.end)} s is {where} the start {seconds_text(self.start)} s")
        if self.speaker is not None and not (isinstance(self.speaker, str) and SPEAKER.fullmatch(self.speaker)):
            raise InputError(f"speaker {self.speaker!r} must be one word of letters, digits, _ or -, starting "
                             f"with a letter")  # fmt: skip

    @property
    def timed(self) -> bool:
        return self.start is not None

    def span(self) -> tuple[float, float]:
        """(start, end) in seconds: a start only spans POINT_SPAN; an untimed line spans all time (-inf, inf)."""
        if self.start is None:
            return -math.inf, math.inf
        return self.start, self.start + POINT_SPAN if self.end is None else self.end

    def encoder_text(self) -> str:
        """What the text encoder reads: "speaker: text", or the text."""
        return f"{self.speaker}: {self.text}" if self.speaker else self.text

    def to_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "speaker": self.speaker, "text": self.text}

    def __str__(self) -> str:
        """The line in file form (Script.parse reads it back)."""
        time = "" if self.start is None else seconds_text(self.start)
        time += "" if self.end is None else f"-{seconds_text(self.end)}"
        return " ".join(part for part in (time, self.speaker and f"{self.speaker}:", self.text) if part)

    @classmethod
    def parse(cls, line: str) -> ScriptLine:
        """One line of the file form; InputError without the location (Script.parse adds it)."""
        rest, start, end = line.strip(), None, None
        word = rest.split(maxsplit=1)[0] if rest else ""
        if TIME_FIELD.fullmatch(word):
            start, end = _times(word)
            rest = rest[len(word) :].strip()
        found, speaker = SPEAKER_PREFIX.match(rest), None
        if found:
            speaker, rest = found["speaker"], rest[found.end() :].strip()
        if not rest:
            after = f" after '{speaker}:'" if speaker else ""
            raise InputError(f"the line has no text{after}: write what is seen or heard, e.g. {EXAMPLE!r}")
        return cls(rest, start, end, speaker)


def _times(word: str) -> tuple[float, float | None]:
    """'1.5' -> (1.5, None), '0.2-1.1' -> (0.2, 1.1); a clear error for anything else made of digits and signs."""
    sign = "-" if word.startswith("-") else ""
    start, dash, end = word[len(sign) :].partition("-")
    if dash and not end:
        raise InputError(f"the time {word!r} has no end after '-': write START-END, e.g. 0.2-1.1, or a start only")
    values = []
    for text in (sign + start, end) if dash else (sign + start,):
        if not NUMBER.fullmatch(text.removeprefix("-")):
            raise InputError(f"the time {word!r} is not a number of seconds: write e.g. 1.5 or 0.2-1.1")
        values.append(float(text))
    for name, value in zip(("start", "end"), values, strict=False):
        if value < 0:
            raise InputError(f"the {name} {seconds_text(value)} s is negative: times count from 0 s")
    return values[0], values[1] if dash else None


@dataclass(frozen=True)
class Script:
    """The lines of one clip, in the order given. `source` and `numbers` (each line's number in its file) only
    name lines in messages."""

    lines: tuple[ScriptLine, ...]
    source: str = field(default="script", compare=False, repr=False)
    numbers: tuple[int, ...] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lines", tuple(self.lines))
        if not self.lines:
            raise InputError(f"{self.source} has no lines: write one line per event, e.g. {EXAMPLE!r}")
        if not all(isinstance(line, ScriptLine) for line in self.lines):
            raise InputError(f"{self.source}: every line must be a ScriptLine (Script.coerce converts text and dicts)")

    @classmethod
    def parse(cls, text: str, source: str = "script") -> Script:
        """The file form: one line a line; blank lines and '#' comments skipped. Errors name source and line."""
        lines, numbers = [], []
        for n, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            try:
                lines.append(ScriptLine.parse(raw))
            except InputError as e:
                raise InputError(f"{source} line {n} ({raw.strip()!r}): {e}") from None
            numbers.append(n)
        return cls(tuple(lines), source, tuple(numbers))

    @classmethod
    def from_prompt(cls, prompt: str) -> Script:
        """A plain prompt: one untimed line (its text taken as it is, numbers and colons included)."""
        try:
            return cls((ScriptLine(prompt),))
        except InputError as e:
            raise InputError(f"prompt {prompt!r}: {e}") from None

    @classmethod
    def coerce(cls, value: Script | str | Sequence[str | dict | ScriptLine]) -> Script:
        """A Script; a str in the file form; or a sequence of lines, each a str (one line of the file form), a dict
        with keys among text, start, end, speaker (Script.to_list's) or a ScriptLine."""
        if isinstance(value, Script):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        if not isinstance(value, Sequence):
            raise InputError(f"script must be text, a Script or a list of lines, got {type(value).__name__}")
        return cls(tuple(_line(item, i) for i, item in enumerate(value, start=1)))

    @property
    def timed(self) -> bool:
        """True when any line has a time."""
        return any(line.timed for line in self.lines)

    def where(self, i: int) -> str:
        """How messages name line i (0-based): its source and its line number there."""
        number = self.numbers[i] if self.numbers else i + 1
        return f"{self.source} line {number} ({str(self.lines[i])!r})"

    def check_duration(self, seconds: float) -> None:
        """Refuse a line that starts, or ends, after a clip of `seconds` (a point event need only start in it)."""
        for i, line in enumerate(self.lines):
            late = line.end if line.end is not None and line.end > seconds + 1e-9 else None
            if line.timed and line.start >= seconds - 1e-9:
                late = line.start
            if late is not None:
                raise InputError(f"{self.where(i)}: {seconds_text(late)} s is past the end of the {seconds:g} s clip: "
                                 f"make the clip longer (duration=...) or move the line")  # fmt: skip

    def in_time_order(self) -> list[ScriptLine]:
        """Untimed lines first, then timed ones by start (ties keep the script's order)."""
        return sorted(self.lines, key=lambda line: (line.timed, line.start or 0.0))

    def prompt(self) -> str:
        """All lines as one untimed prompt, in time order: what a model without time anchors is given."""
        return "; ".join(line.encoder_text() for line in self.in_time_order())

    def text(self) -> str:
        """The whole script in file form."""
        return "\n".join(str(line) for line in self.lines)

    def to_list(self) -> list[dict]:
        """[{"start", "end", "speaker", "text"}, ...]: JSON-ready; Script.coerce reads it back."""
        return [line.to_dict() for line in self.lines]


def _line(item: str | dict | ScriptLine, i: int) -> ScriptLine:
    """Item i (1-based) of a list of lines -> ScriptLine; errors name the item."""
    if isinstance(item, ScriptLine):
        return item
    try:
        if isinstance(item, str):
            return ScriptLine.parse(item)
        if isinstance(item, dict):
            unknown = sorted(set(item) - set(FIELDS), key=str)
            if unknown:
                raise InputError(f"unknown key {unknown[0]!r}: use {', '.join(FIELDS)}")
            if "text" not in item:
                raise InputError("it has no 'text'")
            return ScriptLine(**item)
    except (InputError, TypeError) as e:
        raise InputError(f"script line {i} ({item!r}): {e}") from None
    raise InputError(f"script line {i} is a {type(item).__name__}: give text, a dict or a ScriptLine")
