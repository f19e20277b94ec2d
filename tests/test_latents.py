"""Latent cache: round trip through the real tool, and stale shards refused."""

from __future__ import annotations

import pytest
import torch

from avgen.autoencoders import SeanetAudioAE, VideoVAE
from avgen.data.latents import LatentShards
from tools.cache_latents import main as cache_latents


@pytest.fixture(scope="module")
def aes(tmp_path_factory):
    root = tmp_path_factory.mktemp("aes")
    torch.manual_seed(0)
    video = VideoVAE(latent_channels=4, width=8, mults=[1, 1, 1], blocks=1, latent_blocks=1)
    audio = SeanetAudioAE(latent_channels=4, n_filters=4)
    video.save(root / "video")
    audio.save(root / "audio")
    return root, video, audio


def test_cache_round_trip_and_stale_shards_refused(tmp_path, aes):
    root, video, audio = aes
    code = cache_latents(["--video-ae", str(root / "video"), "--audio-ae", str(root / "audio"), "--out",
                          str(tmp_path / "lat"), "--count", "5", "--shard-size", "3", "--batch", "2"])  # fmt: skip
    assert code == 0
    shards = LatentShards(tmp_path / "lat", video_ae=video, audio_ae=audio)
    assert len(shards) == 5 and len(list((tmp_path / "lat").glob("shard_*"))) == 2
    item = shards[4]
    assert item["video"].shape == (4, 8, 8, 8) and item["audio"].shape == (4, 80)
    assert item["meta"]["index"] == 4 and item["caption"]
    from avgen.data import AVWorld, collate_clips

    with torch.no_grad():
        direct = video.encode(collate_clips([AVWorld()[4]])["video"])[0]
    torch.testing.assert_close(item["video"], direct)
    other = SeanetAudioAE(latent_channels=4, n_filters=4)
    with pytest.raises(ValueError, match="stale.*cache_latents"):
        LatentShards(tmp_path / "lat", video_ae=video, audio_ae=other)
    with pytest.raises(FileNotFoundError, match="cache_latents"):
        LatentShards(tmp_path / "empty")
    # latents of another world version (or written before versions were recorded) are refused
    from safetensors import safe_open

    from avgen.data.latents import write_shard

    with safe_open(str(tmp_path / "lat" / "shard_00000.safetensors"), framework="pt") as sf:
        meta, v, a = sf.metadata(), sf.get_tensor("video"), sf.get_tensor("audio")
    assert meta["source"] == "avworld" and meta["world_version"] == "2"
    hashes = {"video": meta["video_ae_hash"], "audio": meta["audio_ae_hash"]}
    import json

    metas, caps = json.loads(meta["meta"]), json.loads(meta["captions"])
    for name, source in (("v1", {"source": "avworld", "world_version": "1"}), ("old", None)):
        write_shard(tmp_path / name / "shard_00000.safetensors", v, a, caps, metas, hashes, source)
        with pytest.raises(ValueError, match="world version 1.*stale"):
            LatentShards(tmp_path / name, video_ae=video, audio_ae=audio)
    assert meta["fps"] == "16"  # the rate the clips were encoded at; another one is refused, none recorded passes
    with pytest.raises(ValueError, match=r"encoded at 16 fps, but the video autoencoder runs at 24 fps \(video_ae.fps"):
        LatentShards(tmp_path / "lat", hashes={**hashes, "fps": "24"})
    write_shard(tmp_path / "media" / "shard_00000.safetensors", v, a, caps, [{}] * len(caps), hashes)
    assert len(LatentShards(tmp_path / "media", video_ae=video, audio_ae=audio)) == len(caps)  # not avworld


def test_a_rerun_resumes_keeping_complete_shards(tmp_path, aes):
    root, video, audio = aes
    args = ["--video-ae", str(root / "video"), "--audio-ae", str(root / "audio"), "--out", str(tmp_path / "lat"),
            "--count", "5", "--shard-size", "2", "--batch", "2"]  # fmt: skip
    assert cache_latents(args) == 0
    first, second, last = sorted((tmp_path / "lat").glob("shard_*"))
    straight = [LatentShards(tmp_path / "lat", video_ae=video, audio_ae=audio)[i]["video"] for i in range(5)]
    second.unlink()  # a run killed before its second shard was written
    last.write_bytes(last.read_bytes()[:100])  # or a truncated file (atomic writes never leave one, but still)
    stamp = first.stat().st_mtime_ns
    assert cache_latents(args) == 0
    assert first.stat().st_mtime_ns == stamp  # kept, not encoded again
    resumed = LatentShards(tmp_path / "lat", video_ae=video, audio_ae=audio)
    assert len(resumed) == 5 and all(torch.equal(resumed[i]["video"], straight[i]) for i in range(5))
    assert cache_latents([*args[:-5], "3", "--shard-size", "2", "--batch", "2"]) == 0  # a shorter cache
    assert len(LatentShards(tmp_path / "lat", video_ae=video, audio_ae=audio)) == 3


def test_two_ranks_cache_the_shards_of_one_process(tmp_path, aes):
    """torchrun with 2 gloo ranks: rank r encodes shards k % 2 == r into one folder, keeping a complete shard that is
    already there; every shard equals the one-process cache's (tensors bit for bit, metadata as parsed dicts)."""
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from safetensors import safe_open

    from tests.test_train_robust import ENV

    root = aes[0]
    args = ["--video-ae", str(root / "video"), "--audio-ae", str(root / "audio"), "--count", "5", "--shard-size", "2",
            "--batch", "2"]  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun rank runs (OMP_NUM_THREADS=1)
    try:
        assert cache_latents([*args, "--out", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    two = tmp_path / "two"
    two.mkdir()
    shutil.copy2(tmp_path / "one" / "shard_00000.safetensors", two)  # a complete shard of an earlier run: kept
    stamp = (two / "shard_00000.safetensors").stat().st_mtime_ns
    tool = Path(__file__).parents[1] / "tools" / "cache_latents.py"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(tool), *args,
           "--out", str(two)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"wrote 2 shard(s) of latents (3 in all) by 2 rank(s) for 5 clips to {two}" in done.stdout
    assert (two / "shard_00000.safetensors").stat().st_mtime_ns == stamp
    assert (two / "ranks" / "rank1.log").read_text() == "shard 1: encoded clips 2..3\n"
    assert "shard 0: complete, kept" in (two / "ranks" / "rank0.log").read_text()

    def read(path):
        with safe_open(str(path), "pt") as f:
            meta = {k: json.loads(v) if k in ("meta", "captions") else v for k, v in f.metadata().items()}
            return meta, {k: f.get_tensor(k) for k in f.keys()}

    names = sorted(p.name for p in (tmp_path / "one").glob("shard_*"))
    assert names == sorted(p.name for p in two.glob("shard_*")) and len(names) == 3
    for name in names:
        (meta_a, a), (meta_b, b) = read(tmp_path / "one" / name), read(two / name)
        assert meta_a == meta_b and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def _written(directory, sizes=(3, 1, 4)):
    """Shards of random latents (shapes of a tiny cache) written with write_shard, and what was written."""
    from avgen.data.latents import write_shard

    g = torch.Generator().manual_seed(0)
    hashes = {"video": "v" * 64, "audio": "a" * 64}
    video, audio, captions, metas = [], [], [], []
    for k, n in enumerate(sizes):
        v, a = torch.randn(n, 4, 2, 3, 3, generator=g), torch.randn(n, 4, 10, generator=g)
        start = len(captions)
        caps, ms = [f"clip {start + j}" for j in range(n)], [{"index": start + j, "shard": k} for j in range(n)]
        write_shard(directory / f"shard_{k:05d}.safetensors", v, a, caps, ms, hashes, {"source": "folder"})
        video.append(v), audio.append(a), captions.extend(caps), metas.extend(ms)
    return torch.cat(video), torch.cat(audio), captions, metas, hashes


def test_lazy_reads_equal_the_written_latents_and_read_on_demand(tmp_path):
    video, audio, captions, metas, hashes = _written(tmp_path)
    shards = LatentShards(tmp_path, hashes=hashes)
    assert len(shards) == 8 and shards.video.shape == video.shape and shards.audio.shape == audio.shape
    for i in range(8):
        item = shards[i]
        assert torch.equal(item["video"], video[i]) and torch.equal(item["audio"], audio[i])
        assert item["caption"] == captions[i] and item["meta"] == metas[i]
    assert torch.equal(shards.video[-1], video[7]) and list(shards.metas) == metas and shards.captions == captions
    with pytest.raises(IndexError):
        shards.video[8]
    # clip 5 (the second row of the last shard) rewritten in place after opening: the next read sees it
    last = tmp_path / "shard_00002.safetensors"
    data = bytearray(last.read_bytes())
    start, row = data.find(video[5].numpy().tobytes()), video[5].numel() * 4
    data[start : start + row] = torch.full_like(video[5], 7.0).numpy().tobytes()
    last.write_bytes(bytes(data))
    assert torch.equal(shards.video[5], torch.full_like(video[5], 7.0)) and torch.equal(shards.video[4], video[4])


def test_lazy_reads_in_a_forked_dataloader_worker(tmp_path):
    video, audio, captions, _, hashes = _written(tmp_path)
    shards = LatentShards(tmp_path, hashes=hashes)
    assert torch.equal(shards.video[0], video[0])  # descriptors opened in the parent before the fork
    loader = torch.utils.data.DataLoader(shards, batch_size=None, num_workers=1, multiprocessing_context="fork")
    items = list(loader)
    assert [it["caption"] for it in items] == captions
    assert all(torch.equal(it["video"], video[i]) and torch.equal(it["audio"], audio[i]) for i, it in enumerate(items))


def test_a_cut_or_mismatched_shard_is_refused_naming_it(tmp_path):
    from avgen.errors import InputError

    *_, hashes = _written(tmp_path)
    cut = tmp_path / "shard_00001.safetensors"
    whole = cut.read_bytes()
    for keep in (len(whole) - 4, 100, 5):  # in the data, in the header, in the header's length
        cut.write_bytes(whole[:keep])
        with pytest.raises(InputError, match=f"shard_00001.safetensors is {keep} bytes.*cache_latents") as e:
            LatentShards(tmp_path, hashes=hashes)
        assert "\n" not in str(e.value)
    cut.write_bytes((3).to_bytes(8, "little") + b"[1]")  # a header that is no safetensors header
    with pytest.raises(InputError, match="shard_00001.safetensors: not a safetensors file"):
        LatentShards(tmp_path, hashes=hashes)
    from avgen.data.latents import write_shard

    write_shard(cut, torch.zeros(1, 4, 2, 3, 2), torch.zeros(1, 4, 10), ["x"], [{}], hashes, {"source": "folder"})
    with pytest.raises(InputError, match=r"shard_00001.safetensors: video latents of shape \(4, 2, 3, 2\)"):
        LatentShards(tmp_path, hashes=hashes)


def test_a_meta_field_parses_each_shard_header_once(tmp_path, monkeypatch):
    from avgen.data import latents

    *_, metas, hashes = _written(tmp_path, sizes=(1, 2, 1, 1, 2, 1))  # more shards than _Metas keeps parsed (4)
    calls, parse = [], latents._Metas._parse
    monkeypatch.setattr(latents._Metas, "_parse", lambda self, k: calls.append(k) or parse(self, k))
    shards = LatentShards(tmp_path, hashes=hashes)
    field, order = latents._MetaField(shards.metas, "shard"), list(range(8)) * 3  # cycles through all 6 shards
    assert [field[i] for i in order] == [metas[i]["shard"] for i in order]
    assert sorted(calls) == list(range(6))  # once each: cycling through 6 headers with 4 kept would parse 18 times
    assert [shards.scripts[i] for i in range(8)] == [None] * 8  # what LatentBatcher reads: no clip here has one
