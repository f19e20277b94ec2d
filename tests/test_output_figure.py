"""tools/make_output_figure.py --inputs: the README figure's a2v and v2a inputs, readable by avgen-generate."""

from __future__ import annotations

import pytest
import torch

from avgen.media import read_clip
from tools.make_output_figure import write_inputs


def test_inputs_are_recorded_speech_and_a_silent_bounce(tmp_path):
    try:
        speech, silent = write_inputs(tmp_path)
    except SystemExit as e:  # AVGEN_NO_SKIPS turns this skip into a failure on machines set up by tools/_setup.sh
        pytest.skip(str(e))
    s = read_clip(speech, sample_rate=16000)
    assert s.audio.shape == (1, 32000) and 0.5 < s.audio.abs().max() <= 0.71 and s.video.shape[0] == 0
    v = read_clip(silent)
    assert v.video.shape == (32, 64, 64, 3) and v.audio.abs().max() < 1e-3
    assert v.video.float().std() > 10  # a scene, not a blank frame
    assert not torch.equal(v.video[0], v.video[-1])  # the objects move


def test_titles_show_a_scripts_timed_lines_and_the_model_else_the_prompt():
    import json

    from avgen.script import Script
    from tools.make_output_figure import title

    script = Script.parse("a room\n1.6 a knock\n0.2-0.5 left: says 'red'")
    meta = {"task": "t2av", "prompt": script.prompt(), "seed": "3", "model_hash": "ebb721fb8855a840",
            "script": json.dumps(script.to_list())}  # fmt: skip
    assert title(meta) == "[t2av] model ebb721fb, script: 0.2-0.5 left: says 'red' | 1.6 a knock  (seed 3)"
    plain = {**meta, "script": json.dumps(Script.from_prompt("a room").to_list())}
    assert title(plain) == f"[t2av] {script.prompt()}  (seed 3)" and title({}) == "[?] (no prompt)  (seed ?)"
