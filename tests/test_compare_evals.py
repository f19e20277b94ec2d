"""tools/compare_evals.py: headline ratios and the selection score from eval.json files."""

from __future__ import annotations

import json

import pytest

from tools.compare_evals import headline, main


def fake_eval(gen_align: float, onsets: float) -> dict:
    sync = {"median |A/V offset| (ms)": 50.0, "low-confidence offsets (share)": 0.2, "AV-Align": 0.8,
            "mouth_sync (talking heads)": 0.9}  # fmt: skip
    acc = {"accuracy": {"all": 0.5}}
    return {
        "t2av": {"sync": {"generated": {**sync, "AV-Align": gen_align}, "real": sync,
                          "audio-shuffled": {**sync, "AV-Align": 0.4, "mouth_sync (talking heads)": 0.1}},
                 "attributes": {"generated": acc, "generated, novel captions": acc},
                 "fd": {"generated": {"FD video (AE features)": 1.0, "FD audio (AE features)": 2.0}}},
        "a2v": {"avworld speech": {"generated": 0.5, "real": 0.9, "audio-shuffled": 0.1},
                "recorded speech": {"generated": 0.6}},
        "v2a": {"generated": {"onsets within a frame of a contact (share)": onsets,
                              "contacts that got an onset (share)": 0.5, "sound class correct (share)": 1.0}},
        "dependence": {"bounce": {"v2a": {"gap": 0.01, "gap_at_noise": 0.02}}},
        "config": {"seed": 778},
    }  # fmt: skip


def test_ratios_and_capped_score(tmp_path):
    h = headline(fake_eval(gen_align=0.6, onsets=2.0))  # an impossible share: the cap keeps it from buying the rest
    assert h["t2av AV-Align ratio"] == pytest.approx(0.5) and h["t2av mouth_sync ratio"] == pytest.approx(1.0)
    assert h["A2V mouth_sync ratio, avworld"] == pytest.approx(0.5)
    assert h["score"] == pytest.approx((0.5 + 1.0 + 1.0 + 0.5 + 0.5 + 0.5 + 0.5) / 7)
    for name, g in (("a", 0.6), ("b", 0.8)):
        (tmp_path / f"{name}.json").write_text(json.dumps(fake_eval(g, 0.3)))
    out = tmp_path / "cmp.md"
    assert main([f"a={tmp_path / 'a.json'}", f"b={tmp_path / 'b.json'}", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| t2av AV-Align ratio | 0.5 | 1 |" in text and "Seeds: a 778, b 778" in text
    with pytest.raises(SystemExit, match="does not exist"):
        main([f"c={tmp_path / 'nope.json'}"])


def test_within_marks_only_changes_worse_than_the_fraction_in_each_metrics_direction(tmp_path):
    old, new = fake_eval(0.6, 0.5), fake_eval(0.8, 0.46)  # AV-Align ratio 0.5 -> 1 (better); onsets -8 % (worse)
    new["t2av"]["fd"]["generated"]["FD video (AE features)"] = 1.04  # FD +4 %: worse, but within 5 %
    new["t2av"]["sync"]["generated"]["median |A/V offset| (ms)"] = 40.0  # lower offset: better
    new["scripts"] = {"columns": {"scripted": {"events on time (all)": 0.75}}}
    for name, res in (("old", old), ("new", new)):
        (tmp_path / f"{name}.json").write_text(json.dumps(res))
    out = tmp_path / "cmp.md"
    assert main([f"old={tmp_path / 'old.json'}", f"new={tmp_path / 'new.json'}", "--within", "0.05", "--out",
                 str(out)]) == 0  # fmt: skip
    text = out.read_text()
    assert "| t2av AV-Align ratio | 0.5 | 1 (+100%) |" in text
    assert "| V2A onsets within a frame of a contact | 0.5 | 0.46 (-8% ✗) |" in text
    assert "| FD video / audio | 1 / 2 | 1.04 (-4%) / 2 (+0%) |" in text
    assert "| t2av median A/V offset, absolute (ms) | 50 | 40 (+20%) |" in text
    assert "| script: events on time (all) | nan | 0.75 |" in text
    assert "worse by more than 5% on 1: V2A onsets within a frame of a contact." in text
