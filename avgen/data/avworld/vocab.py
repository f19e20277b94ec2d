"""The avworld vocabulary: what scenes can contain, and the words captions use for it."""

from __future__ import annotations

FAMILIES = ("bounce", "talk", "blink")

# name -> RGB in [0, 1]
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.15, 0.15),
    "green": (0.15, 0.80, 0.25),
    "blue": (0.20, 0.35, 0.95),
    "yellow": (0.95, 0.85, 0.15),
    "purple": (0.65, 0.25, 0.85),
    "orange": (0.98, 0.55, 0.10),
}

BACKGROUNDS: dict[str, tuple[float, float, float]] = {
    "black": (0.04, 0.04, 0.05),
    "dark blue": (0.05, 0.08, 0.25),
    "grey": (0.35, 0.35, 0.38),
    "white": (0.92, 0.92, 0.90),
}

SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
# shape -> the sound its impacts make
SHAPE_SOUNDS = {"circle": "wooden knocks", "square": "metallic clangs", "triangle": "glassy pings"}
SOUND_SYNONYMS = {
    "wooden knocks": ("wooden knocks", "hollow wooden knocks", "dull knocks"),
    "metallic clangs": ("metallic clangs", "ringing metal clangs", "clanging sounds"),
    "glassy pings": ("glassy pings", "bright glass pings", "high pings"),
}

VOICES = {"low": (95.0, 130.0), "high": (190.0, 250.0)}  # voice -> pitch range in Hz
SPEAKER = {
    "low": ("a man", "a man with a deep voice", "a low-voiced speaker"),
    "high": ("a woman", "a woman with a high voice", "a high-voiced speaker"),
}

# The words the talking heads say (spoken by eSpeak NG, avgen/data/avworld/speech.py); captions quote them.
WORDS = ("hello", "river", "sunny", "table", "kitten", "apple", "moon", "seven", "paper", "window", "yes", "banana",
         "forest", "tomato", "garden", "water", "music", "happy", "coffee", "pencil", "rabbit", "lemon", "ocean",
         "bottle")  # fmt: skip

# Lamp beeps: name -> tone in Hz
PITCHES = {"low": 330.0, "middle": 660.0, "high": 1320.0}
LAMP_SHAPES = ("circle", "square")

# Families with timelines (avgen/data/avworld/timelines.py): each clip's meta["script"] says who says what, and when.
# Drawn only when asked for (AVWorld(families=...)): FAMILIES, the default, stays as it was.
TIMED_FAMILIES = ("dialogue", "scripted")
SIDES = ("left", "right")
PERSON = {"low": "man", "high": "woman"}  # voice -> the noun the script uses
# shape -> one impact, as a timed line names it
IMPACT_SOUND = {"circle": "a wooden knock", "square": "a metallic clang", "triangle": "a glassy ping"}
IMPACT_SYNONYMS = {
    "circle": ("a wooden knock", "a hollow knock", "a dull knock"),
    "square": ("a metallic clang", "a ringing clang", "a clang of metal"),
    "triangle": ("a glassy ping", "a bright ping", "a high ping"),
}
