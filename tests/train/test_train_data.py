"""Loading features from a real store: the manifest/store checks, order, padding and batching."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import features
from manifests import SIX_CLASSES, Utterance
from manifests.io import manifest_hash
import train.data as train_data
from train.data import DataError, FeatureData, ModalityData, batch_order, class_list, iter_batches, load_features, pool_frames

SETS = {"a": "audio", "t": "text", "v": "video"}


def test_features_come_back_in_manifest_order_with_masks(small_corpus):
    manifest, store, rows = small_corpus
    shuffled = list(reversed(rows))
    data = load_features(shuffled, store, SETS, ("a", "t", "v"))
    assert data.ids == [r.utt_id for r in shuffled]
    assert data.modalities["a"].data.dtype == np.float16  # kept as stored; cast per batch
    with features.open_store(str(store)) as s:
        for i in (0, 5, len(rows) - 1):
            got = data.modalities["a"].data[:, data.modalities["a"].offsets[i]:data.modalities["a"].offsets[i + 1]]
            np.testing.assert_array_equal(got, s["audio"].read(shuffled[i].utt_id))
        batch = next(iter_batches(data, [3, 7, 11], 3))
        x, mask = batch.inputs["a"]
        assert x.dtype.is_floating_point and str(x.dtype) == "torch.float32"
        assert x.shape[:2] == (3, 2) and mask.shape == (3, x.shape[2])
        for j, i in enumerate(batch.index):
            ref = s["audio"].read(shuffled[i].utt_id)
            n = ref.shape[1]
            assert mask[j].sum() == n and mask[j, :n].all()  # real frames first
            np.testing.assert_array_equal(x[j, :, :n].numpy(), ref.astype(np.float32))
            assert (x[j, :, n:] == 0).all()
    assert [data.classes[k] for k in data.labels] == [r.label for r in shuffled]


def test_missing_utterance_is_a_clear_error(tmp_path, small_corpus, write_store):
    _, _, rows = small_corpus
    gone = [rows[4].utt_id, rows[9].utt_id]
    store = write_store(tmp_path / "f.h5", rows, modalities=("a", "t"), skip={"t": gone})
    load_features(rows, store, SETS, ("a",))  # audio is complete
    with pytest.raises(DataError) as err:
        load_features(rows, store, SETS, ("a", "t"))
    assert str(err.value) == (
        f"{store}: feature set 'text' lacks 2 of the manifest's {len(rows)} utterances; first: {gone[0]}, {gone[1]}. "
        "Finish the extraction (`extract run` resumes) or train on a manifest without them")


def test_set_from_another_manifest_is_refused(tmp_path, small_corpus, write_store):
    _, _, rows = small_corpus
    other = [dataclasses.replace(rows[0], label="sad" if rows[0].label != "sad" else "hap"), *rows[1:]]
    store = write_store(tmp_path / "f.zarr", rows, modalities=("a",), manifest_rows=other)
    with pytest.raises(DataError) as err:
        load_features(rows, store, SETS, ("a",))
    assert str(err.value) == (
        f"{store}: feature set 'audio' was extracted from another manifest "
        f"(set's manifest_hash {manifest_hash(other)}, this manifest's {manifest_hash(rows)}); "
        "extract it with this manifest, or train with the manifest it was extracted from")


def test_unknown_set_names_the_sets_there(small_corpus):
    manifest, store, rows = small_corpus
    with pytest.raises(DataError) as err:
        load_features(rows, store, SETS | {"v": "faces"}, ("a", "v"))
    assert str(err.value) == (f"no feature set 'faces' for modality 'v' (sets there: {store}: ['audio', 'text', 'video']). "
                              "Extract it, or name the set with --sets v=SET")


def test_one_store_per_modality(tmp_path, small_corpus, write_store):
    _, store, rows = small_corpus
    audio = write_store(tmp_path / "audio.h5", rows, modalities=("a",))
    text = write_store(tmp_path / "text.zarr", rows, modalities=("t",))
    data = load_features(rows, [audio, text], SETS, ("a", "t"))
    assert data.modalities["t"].data.shape[1] == 8
    with pytest.raises(DataError) as err:
        load_features(rows, [audio, store], SETS, ("a",))
    assert str(err.value) == f"feature set 'audio' for modality 'a' is in several stores ({audio}, {store}); pass only one of them"


def test_class_order():
    def row(label):
        return Utterance(utt_id=label, label=label, group="1", audio="x.wav")

    assert class_list([row(c) for c in reversed(SIX_CLASSES)]) == SIX_CLASSES
    assert class_list([row("sad"), row("hap"), row("ang")]) == ("hap", "ang", "sad")
    assert class_list([row("pos"), row("neg")]) == ("neg", "pos")


def test_batches_cover_every_row_once_and_group_lengths():
    lengths = np.random.default_rng(0).integers(1, 500, size=1000)
    index = np.arange(0, 1000, 2)
    rng = np.random.default_rng(1)
    batches = batch_order(lengths, index, 16, rng)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == index.tolist()
    # length-bucketed: padding within a batch is far below that of random batches
    waste = np.mean([lengths[b].max() - lengths[b].mean() for b in batches])
    random_waste = np.mean([lengths[b].max() - lengths[b].mean() for b in np.array_split(rng.permutation(index), len(batches))])
    assert waste < random_waste / 4
    again = batch_order(lengths, index, 16, np.random.default_rng(1))
    assert all((a == b).all() for a, b in zip(batches, again))
    evaluation = np.concatenate(batch_order(lengths, index, 16, None))
    assert (np.diff(lengths[evaluation]) >= 0).all()


@pytest.mark.parametrize("layers", [None, 3])
def test_pool_frames_means_each_window_from_frame_zero(monkeypatch, layers):
    monkeypatch.setattr(train_data, "_PREPARE_CHUNK", 2)  # chunks end inside the corpus
    lengths = np.array([1, 3, 7, 10, 4])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    shape = ((layers,) if layers else ()) + (int(offsets[-1]), 5)
    frames = np.random.default_rng(0).standard_normal(shape).astype(np.float16)
    md = ModalityData("audio", frames, offsets, 5, layers, {}, "x")
    pooled = pool_frames(FeatureData([str(i) for i in range(5)], None, SIX_CLASSES, None, {"a": md}), 3).modalities["a"]
    assert pooled.data.dtype == np.float32 and pooled.lengths.tolist() == [1, 1, 3, 4, 2]
    for i, n in enumerate(lengths):
        utt = frames[..., offsets[i]:offsets[i + 1], :].astype(np.float64)
        want = np.stack([utt[..., s:s + 3, :].mean(axis=-2) for s in range(0, n, 3)], axis=-2)
        np.testing.assert_allclose(pooled.data[..., pooled.offsets[i]:pooled.offsets[i + 1], :], want, rtol=1e-6, atol=1e-6)
