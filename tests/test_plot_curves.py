"""tools/plot_curves.py: the training curves PNG from a metrics.jsonl (resumes marked, repeated steps replaced)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from tools.plot_curves import main, read_metrics, resumes, smoothed


def test_curves_from_a_resumed_run(tmp_path):
    rows = [{"step": s, "time": 1000.0 + s + (5000 if s > 60 else 0), "loss": 1.0 / s, "lr": 1e-4} for s in
            range(20, 120, 20)]  # fmt: skip
    rows.append({"step": 60, "time": 1100.0, "loss": 0.5, "lr": 1e-4})  # logged again after a resume
    rows.append({"step": 100, "time": 6200.0, "val/mouth_sync": 0.7})
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    got = read_metrics(path)
    assert [r["step"] for r in got] == [20, 40, 60, 80, 100, 100] and got[2]["loss"] == 0.5
    assert resumes(got, gap=600) == [80]
    assert main([str(path), "--out", str(tmp_path / "c.png"), "--metrics", "loss", "val/mouth_sync", "nope"]) == 0
    assert Image.open(tmp_path / "c.png").size == (360, 300)  # two panels drawn: the unlogged metric is left out
    with pytest.raises(SystemExit, match="none of"):
        main([str(path), "--out", str(tmp_path / "d.png"), "--metrics", "nope"])


def test_smoothing_is_bias_corrected():
    got = smoothed([(1, 2.0), (2, 2.0), (3, 2.0)], 0.9)
    assert [s for s, _ in got] == [1, 2, 3] and [v for _, v in got] == pytest.approx([2.0, 2.0, 2.0])
