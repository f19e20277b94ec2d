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
