"""The video contact detector (pixels only) and the per-object fidelity of a round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avgen.data import AVWorld
from avgen.metrics.contacts import video_contacts
from avgen.metrics.recon import object_fidelity

FRAME = 1 / 16


def test_contacts_found_on_real_bounces_and_none_in_a_still_video():
    world = AVWorld(seed=31, families=["bounce"])
    recall, precision = [], []
    for i in range(12):
        clip = world[i]
        found = np.array(video_contacts(clip.video, clip.fps))  # frames only
        true = np.array(clip.meta["events"])
        recall += [len(found) > 0 and np.abs(found - t).min() <= FRAME for t in true]
        precision += [len(true) > 0 and np.abs(true - t).min() <= FRAME for t in found]
    assert np.mean(recall) >= 0.85 and np.mean(precision) >= 0.85, (np.mean(recall), np.mean(precision))
    still = world[0].video[:1].repeat(32, 1, 1, 1)
    assert video_contacts(still, 16.0) == []


def test_object_fidelity_reads_kept_and_lost_objects():
    world = AVWorld(seed=31, families=["bounce"])
    clip = world[1]
    (_, coverage), *_ = world.object_masks(1)
    same = object_fidelity(clip.video, clip.video, coverage)
    assert same["colour error"] == 0.0 and same["contrast kept"] == 1.0
    inside = torch.from_numpy(coverage > 0.05)[..., None]
    background = torch.from_numpy(np.median(clip.video.numpy(), axis=0).astype(np.uint8))
    erased = torch.where(inside, background[None], clip.video)  # the object painted over with the background
    lost = object_fidelity(clip.video, erased, coverage)
    assert lost["contrast kept"] < 0.1 and lost["colour error"] > 0.1


def test_round_trip_reports_of_a_perfect_autoencoder_keep_everything():
    from avgen.evaluation import audio_report, video_report

    world = AVWorld(seed=31)
    clips = [world[i] for i in range(6)]
    masks = [world.object_masks(i) for i in range(6)]
    video = video_report(clips, [c.video for c in clips], masks, FRAME)
    assert video["object colour error"] == 0.0 and video["object contrast kept"] == 1.0
    assert video["objects vanished (count)"] == 0.0 and video["colour kept"] == 1.0 and video["family kept"] == 1.0
    assert video["contacts seen again (video detector)"] == 1.0
    audio = audio_report(clips, [c.audio for c in clips], FRAME)
    assert audio["audio log-mel L1"] == 0.0 and audio["sound kept"] == 1.0
    given = {"real": {"WER": 0.25}}  # the real clips' speech rows, measured once by the caller (AERoundTrip)
    silent = audio_report(clips, [0 * c.audio for c in clips], FRAME, real_speech=given)
    assert silent["speech WER, real (talk clips)"] == 0.25 and silent["speech WER, round trip (talk clips)"] > 0.9
    assert silent["contacts with an onset (recall)"] == 0.0 and silent["audio log-mel L1"] > 1.0
    assert audio["audio energy kept > 1 kHz (dB)"] == 0.0 and audio["audio energy kept < 1 kHz (dB)"] == 0.0
    assert audio["speech WER, round trip (talk clips)"] == audio["speech WER, real (talk clips)"] < 0.5  # 4 talk clips


def test_palette_report_reads_zero_for_a_perfect_round_trip_and_the_gap_for_a_grey_one():
    from avgen.autoencoders.video import VideoVAE
    from avgen.data.avworld.vocab import BACKGROUNDS, COLOURS
    from avgen.evaluation import palette_report

    ae = VideoVAE(latent_channels=4, width=8, mults=[1, 1, 2])
    ae.encode = lambda x: x  # a perfect round trip
    ae.decode = lambda z: z
    assert all(v == pytest.approx(0.0, abs=1e-6) for v in palette_report(ae).values())
    grey = torch.tensor(BACKGROUNDS["grey"]).view(1, 3, 1, 1, 1)
    ae.decode = lambda z: (grey * 2 - 1).expand_as(z)  # every square melts into the grey background
    gaps = [np.abs(np.subtract(rgb, BACKGROUNDS["grey"])).mean() for rgb in COLOURS.values()]
    report = palette_report(ae)
    assert report["static large squares: colour error (mean)"] == pytest.approx(np.mean(gaps), abs=1e-6)
    assert report["static small squares: colour error (worst)"] == pytest.approx(np.max(gaps), abs=1e-6)
