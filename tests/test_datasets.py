"""plugtalk.data.datasets: clip discovery, identities, self-/cross-reenactment pairs, frame access."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data_support import faces_dir, train_clip
from plugtalk.data.datasets import (ClipStore, CrossReenactmentDataset, SelfReenactmentDataset, identity_of,
                                    list_clips)
from plugtalk.errors import InputError
from plugtalk.io.images import save_image, to_uint8
from plugtalk.io.video import VideoWriter, read_frames


@pytest.fixture(scope="module")
def small_clips(tmp_path_factory):
    """Short copies of real clips of three identities (keeps the tests fast), plus a frame folder."""
    root = tmp_path_factory.mktemp("clips")
    for name, n in [("obama__obama_00", 30), ("obama__uncrop_Obama_00", 20), ("dpe_d__d_00", 25),
                    ("vox_driving1__driving1_00", 12)]:
        frames = read_frames(train_clip(name), max_frames=n)
        with VideoWriter(root / f"{name}.mp4", fps=25) as w:
            w.write(frames)
    folder = root / "alice" / "take1"  # identity from the parent folder
    folder.mkdir(parents=True)
    for i, f in enumerate(read_frames(train_clip("edtalk_pose_source1__pose_source1"), max_frames=6)):
        save_image(folder / f"{i:04d}.png", f)
    return root


def test_list_clips_and_identities(small_clips):
    clips = list_clips(small_clips)
    got = {(c.name, c.identity, c.kind, c.num_frames) for c in clips}
    assert got == {("obama__obama_00", "obama", "video", 30), ("obama__uncrop_Obama_00", "obama", "video", 20),
                   ("dpe_d__d_00", "dpe_d", "video", 25), ("vox_driving1__driving1_00", "vox_driving1", "video", 12),
                   ("take1", "alice", "frames", 6)}
    assert identity_of("/x/y/bob__clip3.mp4") == "bob"
    with pytest.raises(InputError, match="does not exist"):
        list_clips(small_clips / "nope")
    (small_clips.parent / "void").mkdir(exist_ok=True)
    with pytest.raises(InputError, match="no clips"):
        list_clips(small_clips.parent / "void")


def test_self_reenactment_pairs(small_clips):
    ds = SelfReenactmentDataset(small_clips, repeats=3, seed=7)
    assert len(ds) == 15 and ds.store.frame_access == "cache"
    item = ds[1]
    assert item["source"].shape == (3, 256, 256) and item["driving"].shape == (3, 256, 256)
    assert item["source"].dtype == torch.float32
    assert -1 <= item["source"].min() and item["source"].max() <= 1
    assert item["source_index"] != item["driving_index"]
    c = ds.clips[1 % 5]
    assert item["clip"] == c.name and item["identity"] == c.identity
    # the tensors are those frames of that clip
    frames = ds.store.frames(1 % 5, [item["source_index"], item["driving_index"]])
    np.testing.assert_array_equal(to_uint8(item["source"]), frames[0])
    np.testing.assert_array_equal(to_uint8(item["driving"]), frames[1])
    # every clip equally often
    assert sorted(ds.pair_indices(i)[0] for i in range(len(ds))) == sorted(list(range(5)) * 3)


def test_self_pairs_are_seeded_and_change_with_epoch(small_clips):
    a = SelfReenactmentDataset(small_clips, repeats=4, seed=1, frame_access="seek")
    b = SelfReenactmentDataset(small_clips, repeats=4, seed=1)
    assert [a.pair_indices(i) for i in range(len(a))] == [b.pair_indices(i) for i in range(len(b))]
    torch.testing.assert_close(a[3]["source"], b[3]["source"])  # seek and cache give the same pixels
    first = [a.pair_indices(i) for i in range(len(a))]
    a.set_epoch(1)
    assert [a.pair_indices(i) for i in range(len(a))] != first
    c = SelfReenactmentDataset(small_clips, repeats=4, seed=2)
    assert [c.pair_indices(i) for i in range(len(c))] != first


def test_hflip_mirrors_source_and_driving_together(small_clips):
    ds = SelfReenactmentDataset(small_clips, repeats=8, seed=0, hflip=True)
    flips = [ds.pair_indices(i)[3] for i in range(len(ds))]
    assert any(flips) and not all(flips)
    i = flips.index(True)
    clip, s, d, _ = ds.pair_indices(i)
    item = ds[i]
    np.testing.assert_array_equal(to_uint8(item["source"]), ds.store.frames(clip, [s])[0][:, ::-1])
    np.testing.assert_array_equal(to_uint8(item["driving"]), ds.store.frames(clip, [d])[0][:, ::-1])


def test_dataloader_workers_give_the_same_batches(small_clips):
    ds = SelfReenactmentDataset(small_clips, repeats=2, seed=3)

    def run(workers):
        dl = DataLoader(ds, batch_size=4, shuffle=False, num_workers=workers)
        return [(b["source_index"].tolist(), b["driving_index"].tolist(), b["source"].sum().item()) for b in dl]

    single = run(0)
    assert run(2) == single
    assert sum(len(s) for s, _, _ in single) == len(ds)


def test_cross_reenactment_pairs_are_cross_identity_and_deterministic(small_clips):
    ds = CrossReenactmentDataset(small_clips, pairs_per_driver=2, driving_frames=4, seed=0)
    assert len(ds) == 2 * 5
    for p in ds.pairs:
        assert ds.clips[p.source_clip].identity != ds.clips[p.driving_clip].identity
        assert p.source_frame == 0 and len(p.driving_frames) == 4
    # the two sources of one driver have different identities (enough identities here)
    for d in range(5):
        ids = [ds.clips[p.source_clip].identity for p in ds.pairs if p.driving_clip == d]
        assert len(set(ids)) == 2
    assert CrossReenactmentDataset(small_clips, pairs_per_driver=2, driving_frames=4, seed=0).pairs == ds.pairs
    item = ds[0]
    assert item["source"].shape == (3, 256, 256) and item["driving"].shape == (4, 3, 256, 256)
    assert item["source_identity"] != item["driving_identity"]
    n = ds.clips[ds.pairs[0].driving_clip].num_frames
    assert item["driving_indices"].tolist() == [round(x) for x in np.linspace(0, n - 1, 4)]
    full = CrossReenactmentDataset(small_clips, seed=0)
    assert all(len(p.driving_frames) == ds.clips[p.driving_clip].num_frames for p in full.pairs)


def test_cross_needs_two_identities(small_clips):
    obama = [c for c in list_clips(small_clips) if c.identity == "obama"]
    with pytest.raises(InputError, match="two identities"):
        CrossReenactmentDataset(obama)


def test_store_resizes_and_checks_indices(small_clips):
    clips = list_clips(small_clips)
    store = ClipStore(clips, size=128, frame_access="seek")
    assert store.frames(0, [0, 1]).shape == (2, 128, 128, 3)
    with pytest.raises(InputError, match="out of range"):
        store.frames(0, [clips[0].num_frames])


def test_cache_budget_switches_to_seeking_and_evicts(small_clips):
    clips = list_clips(small_clips)
    assert ClipStore(clips, cache_bytes=10 << 20).frame_access == "seek"  # 93 frames x 196 KB > 10 MB
    lru = ClipStore(clips, frame_access="cache", cache_bytes=7 << 20)      # room for about one clip
    for i in range(len(clips)):
        np.testing.assert_array_equal(lru.frames(i, [1])[0], ClipStore(clips, frame_access="seek").frames(i, [1])[0])
        assert lru._cached_bytes <= 7 << 20 or len(lru._cache) == 1
    assert 1 <= len(lru._cache) < len(clips)  # older clips were evicted


def test_cache_budget_counts_frames_at_the_training_size(small_clips):
    """The cache keeps frames resized to ``size``, so the budget is judged at that size: a folder too big to
    cache at 256 px fits at 64 px (the v2 train split: 2.3 GB at 256 px, 0.15 GB at 64 px), and cached frames
    equal the seeked ones."""
    clips = list_clips(small_clips)
    full = sum(c.nbytes for c in clips)
    assert ClipStore(clips, cache_bytes=full // 2).frame_access == "seek"
    small = ClipStore(clips, size=64, cache_bytes=full // 2)
    assert small.frame_access == "cache" and sum(small.stored_bytes(c) for c in clips) * 16 == full
    seek = ClipStore(clips, size=64, frame_access="seek")
    for i in range(len(clips)):
        np.testing.assert_array_equal(small.frames(i, [0, 2]), seek.frames(i, [0, 2]))
    assert all(f.shape[1:] == (64, 64, 3) for f in small._cache.values())  # stored at the training size


def test_shared_splits_are_whole_identities_and_match_the_manifest():
    """Properties of the shared face set, whatever its version or size: the files on disk are exactly the
    MANIFEST's, every file sits in its split under its identity, and no identity is in two splits."""
    from plugtalk.shared_data import manifest

    m = manifest()
    data = faces_dir("train").parents[1]
    listed = {f["path"]: f for f in m["files"]}
    on_disk = {p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file()} - {"MANIFEST.json", "README.md"}
    described = set(listed) | {f["wav"] for f in m["files"] if f.get("wav")}
    assert on_disk == described, (f"not in MANIFEST: {sorted(on_disk - described)[:5]}; "
                                  f"missing: {sorted(described - on_disk)[:5]}")
    split = {"train": set(m["split"]["train_identities"]), "test": set(m["split"]["test_identities"]),
             "stills": set(m["split"]["still_identities"])}
    assert all(split.values())
    for a, b in [("train", "test"), ("train", "stills"), ("test", "stills")]:
        assert not split[a] & split[b], f"identities in both {a} and {b}: {sorted(split[a] & split[b])}"
    for name in ("train", "test"):
        videos = [f for f in listed.values() if f["kind"] == "video" and f["path"].startswith(f"faces/{name}/")]
        assert {f["identity"] for f in videos} == split[name]
        for f in videos:
            assert f["split"] == name and identity_of(f["path"]) == f["identity"], f["path"]


def test_shared_splits_as_datasets():
    """The shared train / test folders load as datasets that agree with the MANIFEST (clips, identities,
    frame counts); cross-reenactment pairs on the test split never pair an identity with itself."""
    from plugtalk.shared_data import manifest

    m = manifest()
    frames = {f["path"].rsplit("/", 1)[-1].removesuffix(".mp4"): f["frames"] for f in m["files"] if f["kind"] == "video"}
    ds = SelfReenactmentDataset(faces_dir("train"), seed=0, frame_access="seek")
    assert {c.identity for c in ds.clips} == set(m["split"]["train_identities"])
    assert {c.name: c.num_frames for c in ds.clips} == {n: frames[n] for n in (c.name for c in ds.clips)}
    assert len(ds) == len(ds.clips) == sum(f["path"].startswith("faces/train/") and f["kind"] == "video"
                                           for f in m["files"])
    item = ds[5]
    assert item["source"].shape == (3, 256, 256) and item["identity"] == ds.clips[5].identity
    cross = CrossReenactmentDataset(faces_dir("test"), driving_frames=8)
    assert len(cross) == len(cross.clips) and {c.identity for c in cross.clips} == set(m["split"]["test_identities"])
    assert all(cross.clips[p.source_clip].identity != cross.clips[p.driving_clip].identity for p in cross.pairs)
    item = cross[0]
    assert item["driving"].shape == (8, 3, 256, 256) and item["source_identity"] != item["driving_identity"]
