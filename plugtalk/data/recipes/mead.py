"""``--dataset mead``: MEAD's published layout (Wang et al., ECCV 2020)::

    ROOT/<speaker>/video/front/<emotion>/level_<k>/<nnn>.mp4
    ROOT/<speaker>/audio/<emotion>/level_<k>/<nnn>.m4a     (the speaker's audio, used when the mp4 has none)

Only the frontal view is read.  Labels: ``emotion``, ``intensity`` (k), ``view``, ``sentence`` (nnn).  Split
(EDTalk suppl. 1.2, after EAMM and FixTalk): speakers M003, M030, W009 and W015 are the test split, every
other speaker trains.  Every path part that goes into a clip name (speaker, emotion, level, sentence) is
checked as one file-name component.
"""

from __future__ import annotations

import re

from ...errors import InputError
from ...io.paths import VIDEO_SUFFIXES
from .base import Recipe, VideoJob, existing_root, name_part, register

#: MEAD's test speakers in FixTalk / EDTalk / EAMM.
TEST_SPEAKERS = ("M003", "M030", "W009", "W015")
VIEW = "front"
AUDIO_SUFFIXES = (".m4a", ".wav", ".aac", ".mp3")
_LEVEL = re.compile(r"level_(\d+)$")


def _audio(speaker_dir, emotion: str, level: str, stem: str):
    for suf in AUDIO_SUFFIXES:
        p = speaker_dir / "audio" / emotion / level / f"{stem}{suf}"
        if p.is_file():
            return p
    return None


def mead_jobs(root, *, out=None, seed: int = 0, split_file=None, identity=None) -> list[VideoJob]:
    """One job per ``<speaker>/video/front/<emotion>/level_<k>/<nnn>`` video under ``root``.

    Raises:
        InputError: ``root`` is not a folder, holds no MEAD video, or a path part is not a file-name component.
    """
    root = existing_root(root, "mead")
    jobs = []
    for speaker_dir in sorted(p for p in root.iterdir() if (p / "video" / VIEW).is_dir()):
        speaker = name_part(speaker_dir.name, "MEAD speaker")
        for emo_dir in sorted(p for p in (speaker_dir / "video" / VIEW).iterdir() if p.is_dir()):
            emotion = name_part(emo_dir.name, "MEAD emotion")
            for level_dir in sorted(p for p in emo_dir.iterdir() if p.is_dir()):
                m = _LEVEL.match(level_dir.name)
                if m is None:
                    continue
                name_part(level_dir.name, "MEAD level")
                for video in sorted(f for f in level_dir.iterdir()
                                    if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES):
                    sentence = name_part(video.stem, "MEAD clip")
                    jobs.append(VideoJob(
                        video, speaker, f"{VIEW}_{emotion}_level{m.group(1)}_{sentence}",
                        split="test" if speaker in TEST_SPEAKERS else "train",
                        labels={"emotion": emotion, "intensity": int(m.group(1)), "view": VIEW, "sentence": sentence},
                        audio=_audio(speaker_dir, emo_dir.name, level_dir.name, video.stem), dataset="mead"))
    if not jobs:
        raise InputError(f"--dataset mead: no video under {str(root)!r} in MEAD's layout "
                         f"(<speaker>/video/{VIEW}/<emotion>/level_<k>/<nnn>.mp4)")
    return jobs


register(Recipe("mead", "MEAD: <speaker>/video/front/<emotion>/level_<k>/<nnn>.mp4; test speakers "
                + ", ".join(TEST_SPEAKERS), mead_jobs))
