"""Varied captions from a scene's attributes: templates with synonyms, all drawn from the clip's own Generator."""

from __future__ import annotations

import numpy as np

from avgen.data.avworld.vocab import SOUND_SYNONYMS, SPEAKER


def _pick(rng: np.random.Generator, options):
    return options[rng.integers(len(options))]


def _on_bg(rng: np.random.Generator, bg: str) -> str:
    return _pick(rng, ("", f" on a {bg} background", f" against {bg}"))


def bounce_caption(rng: np.random.Generator, a: dict) -> str:
    objs = a["objects"]

    def name(o):
        return f"{o['size']} {o['colour']} {o['shape']}"

    sound = _pick(rng, SOUND_SYNONYMS[a["sound"]])
    if len(objs) == 1:
        verb = _pick(rng, ("bounces off the walls", "bounces around", "ricochets between the walls"))
        head = f"a {name(objs[0])} {verb}"
    else:
        head = f"a {name(objs[0])} and a {name(objs[1])} bounce around"
        sound = f"{sound} and {_pick(rng, SOUND_SYNONYMS[_sound_of(objs[1]['shape'])])}"
    return (
        head
        + _pick(rng, (f" with {sound}", f", making {sound}", f"; every hit gives {sound}"))
        + _on_bg(rng, a["background"])
    )


def _sound_of(shape: str) -> str:
    from avgen.data.avworld.vocab import SHAPE_SOUNDS

    return SHAPE_SOUNDS[shape]


def talk_caption(rng: np.random.Generator, a: dict) -> str:
    who = _pick(rng, SPEAKER[a["voice"]])
    said = " ".join(a["words"])
    verb = _pick(rng, ("says", "speaks the words", "talks:"))
    if verb == "talks:":
        return f"{who} talks: '{said}'" + _on_bg(rng, a["background"])
    return f"{who} {verb} '{said}'" + _on_bg(rng, a["background"])


def blink_caption(rng: np.random.Generator, a: dict) -> str:
    lamp = _pick(rng, ("lamp", "light"))
    beep = _pick(rng, (f"a {a['pitch']} beep", f"a {a['pitch']}-pitched beep", f"a {a['pitch']} tone"))
    head = f"a {a['colour']} {a['shape']} {lamp} blinks"
    return (
        head
        + _pick(rng, (f" with {beep} each time it lights up", f" and gives {beep} while lit"))
        + _on_bg(rng, a["background"])
    )


CAPTIONS = {"bounce": bounce_caption, "talk": talk_caption, "blink": blink_caption}
