"""MediaFolder over real files: corrupt ones are skipped, warned about once and counted; windows deterministic."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from avgen.data import MediaFolder, collate_clips
from tests.media_factory import media_folder_with_bad_files


@pytest.fixture()
def folder(tmp_path):
    return media_folder_with_bad_files(tmp_path)


def test_skips_and_counts_bad_files(folder, caplog):
    ds = MediaFolder(folder, duration=1.0, fps=16, sample_rate=16000, size=32, train=False, max_skip_ratio=0.6)
    assert len(ds) == 7
    with caplog.at_level(logging.WARNING):
        items = [ds[i] for i in range(len(ds))]
        items += [ds[i] for i in range(len(ds))]  # second pass: no new warnings
    assert ds.num_skipped == 4
    assert sorted(p.split("/")[-1] for p in ds.skipped) == ["empty.mp4", "garbage.avi", "silent.mkv", "truncated.mp4"]
    assert len([r for r in caplog.records if "skipping" in r.message]) == 4
    for clip in items:
        assert clip.video.shape == (16, 32, 32, 3) and clip.audio.shape == (1, 16000)
        assert clip.caption.startswith("clip number")
    batch = collate_clips(items[:4])
    assert batch["video"].shape == (4, 3, 16, 32, 32) and batch["audio"].shape == (4, 1, 16000)
    assert batch["video"].min() >= -1 and batch["video"].max() <= 1


def test_skip_ratio_and_empty_folder(folder, tmp_path_factory):
    ds = MediaFolder(folder, duration=1.0, fps=16, sample_rate=16000, max_skip_ratio=0.2)
    with pytest.raises(RuntimeError, match="max_skip_ratio"):
        [ds[i] for i in range(len(ds))]
    with pytest.raises(FileNotFoundError, match="no media files"):
        MediaFolder(tmp_path_factory.mktemp("empty"), 1.0, 16, 16000)
    with pytest.raises(FileNotFoundError, match="data.root"):
        MediaFolder(folder / "absent", 1.0, 16, 16000)


def test_windows_deterministic_per_epoch(folder):
    ds = MediaFolder(folder, duration=0.5, fps=16, sample_rate=16000, train=True, seed=1)
    first = [ds[i].meta["start"] for i in (0, 1, 2)]
    assert first == [MediaFolder(folder, 0.5, 16, 16000, seed=1)[i].meta["start"] for i in (0, 1, 2)]
    starts = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        starts.add(tuple(ds[i].meta["start"] for i in (0, 1, 2)))
    assert len(starts) > 1, "training windows should change across epochs"
    evaluation = MediaFolder(folder, duration=0.5, fps=16, sample_rate=16000, train=False)
    assert evaluation[0].meta["start"] == pytest.approx(0.75)


def test_manifest_captions(folder):
    manifest = folder / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps({"path": f"good{i}.mp4", "caption": f"caption {i}"}) for i in range(3)))
    ds = MediaFolder(folder, duration=1.0, fps=16, sample_rate=16000, manifest=manifest)
    assert [ds[i].caption for i in range(3)] == ["caption 0", "caption 1", "caption 2"]
    assert torch.is_tensor(ds[0].audio)
    (folder / "bad.jsonl").write_text("{not json}\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        MediaFolder(folder, duration=1.0, fps=16, sample_rate=16000, manifest=folder / "bad.jsonl")
