"""Varied captions from a scene's attributes: templates with synonyms, all drawn from the clip's own Generator."""

from __future__ import annotations

import numpy as np

from avgen.data.avworld.vocab import IMPACT_SYNONYMS, PERSON, SOUND_SYNONYMS, SPEAKER


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


def with_article(word: str) -> str:
    """The word after its indefinite article: a red, an orange."""
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _event(rng: np.random.Generator, item: dict, met: set[str], before: dict | None) -> str:
    """One timed event of a timeline (attributes["timeline"]) in words; `met`: the sides whose speaker was named,
    `before`: the event before it."""
    if item["kind"] == "speech":
        side, person = item["side"], PERSON[item["voice"]]
        if side in met:
            who = _pick(rng, (f"the {person}", f"the {person} on the {side}", f"the {side} speaker"))
        else:
            who = f"{_pick(rng, SPEAKER[item['voice']])} on the {side}"
        met.add(side)
        reply = before is not None and before["kind"] == "speech" and before["side"] != side
        verb = _pick(rng, ("says", "replies", "answers") if reply else ("says", "speaks the words"))
        return f"{who} {verb} '{' '.join(item['words'])}'"
    if item["kind"] == "lamp":
        beep = _pick(rng, (f"a {item['pitch']} beep", f"a {item['pitch']}-pitched beep", f"a {item['pitch']} tone"))
        lamp = with_article(item["colour"])
        return _pick(rng, (f"{lamp} lamp lights with {beep}", f"{lamp} light comes on with {beep}"))
    knock = _pick(rng, IMPACT_SYNONYMS[item["shape"]])
    thing = f"{with_article(item['colour'])} {item['shape']}"
    return _pick(rng, (f"{thing} drops with {knock}", f"{thing} falls onto the shelf with {knock}"))


def timeline_caption(rng: np.random.Generator, a: dict) -> str:
    """Every timed line's content in time order, in one untimed sentence: "a man on the left says 'apple seven',
    then a woman on the right says 'hello river'"; a clip with no line is described by its scene."""
    met: set[str] = set()
    timeline = a["timeline"]
    parts = [_event(rng, item, met, timeline[k - 1] if k else None) for k, item in enumerate(timeline)]
    if not parts:
        return a["scene"]
    text = parts[0]
    for part in parts[1:]:
        text += _pick(rng, (", then ", ", and then ", "; then ", ", after which ")) + part
    bg = a["background"]
    return text + _pick(rng, ("", f", on a {bg} background", f", against {bg}"))


CAPTIONS = {"bounce": bounce_caption, "talk": talk_caption, "blink": blink_caption, "dialogue": timeline_caption,
            "scripted": timeline_caption}  # fmt: skip
