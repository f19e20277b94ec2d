"""The procedural audio-visual world: clips whose sound is caused by what is seen.

avgen trains and evaluates on it, since no real AV dataset or pretrained weights are reachable offline. Every clip
is a pure function of (seed, index). Families:
- "bounce": objects bounce off the walls; each contact makes an impact sound whose timbre is set by the shape;
- "talk": a talking head whose mouth opening follows the envelope of synthesized speech;
- "blink": a lamp lights up at irregular times and beeps while it is lit.
Families with timelines, drawn only when named (AVWorld(families=...)), each clip's meta["script"] saying who says
what, and when (timelines.py):
- "dialogue": a man and a woman side by side take turns speaking;
- "scripted": a face speaks a line, a lamp lights with a beep and/or an object drops with a knock after it.
"""

from avgen.data.avworld.vocab import COLOURS, FAMILIES, SHAPES, SIZES, TIMED_FAMILIES, VOICES, WORDS
from avgen.data.avworld.world import AVWorld

__all__ = ["AVWorld", "COLOURS", "FAMILIES", "SHAPES", "SIZES", "TIMED_FAMILIES", "VOICES", "WORDS"]
