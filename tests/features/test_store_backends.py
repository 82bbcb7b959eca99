"""The store contract (``features.testing.StoreSuite``) run against each back-end on real files, and what is
particular to each."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

import features
from features import StoreError, open_store
from features.testing import StoreSuite, provenance, random_arrays


def full(value: float, frames: int = 5) -> np.ndarray:
    return np.full((frames, 8), value, dtype=np.float16)


class OtherStoreObjects:
    """A Store object kept open while another one (another process, in real use) changes the store under it;
    mixed into each back-end's class below, as StoreSuite is. Candidates for ``features.testing.StoreSuite``."""

    def write_sets(self, path, *names):
        with open_store(path, "a") as store:
            for name in names:
                with store.writer(name, provenance()) as w:
                    w.write(f"{name}0", full(1))

    @pytest.mark.parametrize("action", ["delete_set", "finish"])
    def test_a_delete_or_finish_keeps_a_set_another_store_object_added(self, path, action):
        self.write_sets(path, "audio", "text")
        session = open_store(path, "a")  # a long-lived session that listed the sets
        assert session.set_names() == ["audio", "text"]
        self.write_sets(path, "video")  # finished by its writer's close
        with open_store(path, "a") as other, other.writer("audio", provenance(), part="x", finish=False) as w:
            w.write("audio1", full(2))  # something for the session's finish to fold in
        with session:
            session.delete_set("text") if action == "delete_set" else session.finish()
        with open_store(path) as store:
            assert store.set_names() == (["audio", "video"] if action == "delete_set" else ["audio", "text", "video"])
            assert store["video"].ids == ["video0"] and np.array_equal(store["video"].read("video0"), full(1))
        assert features.verify(path).ok

    def test_a_writer_checks_the_identity_of_a_set_another_store_object_made(self, path):
        self.write_sets(path, "audio")
        with open_store(path, "a") as session:
            assert session.set_names() == ["audio"]
            self.write_sets(path, "video")
            with pytest.raises(StoreError, match=r"set 'video' in .* was made with identity .* differences \(set -> this run\): encoder: 'test:random' -> 'test:other'"):
                session.writer("video", provenance(encoder="test:other"))
        with open_store(path) as store:
            assert store["video"].ids == ["video0"]

    def test_an_open_reader_finds_a_set_finished_after_it_listed_the_store(self, path):
        with open_store(path, "a") as store, store.writer("audio", provenance()) as w:
            w.write("a", full(1))
            w.commit()
            with open_store(path) as reader:
                assert reader["audio"].ids == ["a"]
                w.write("b", full(2))
                w.close()  # the last writer: the store is finished
                assert reader.set_names() == ["audio"]
                assert reader["audio"].ids == ["a", "b"]
                assert np.array_equal(reader["audio"].read("b"), full(2))

    def test_an_open_reader_never_reads_a_new_segment_through_old_offsets(self, path):
        with open_store(path, "a") as store, store.writer("audio", provenance(), finish=False) as w:
            w.write("A", full(1))
            w.write("B", full(2))
        with open_store(path) as reader:
            old = reader["audio"]  # A and B in a segment of part main
            assert np.array_equal(old.read("B"), full(2))
            with open_store(path, "a") as store:
                store.finish()  # A and B move into the finished set; the segment goes
                with store.writer("audio", provenance()) as w:  # a resumed run writes part main again
                    w.write("C", full(7))
                    w.write("D", full(8))
                    w.commit()
                    assert np.array_equal(old.read("A"), full(1)) and np.array_equal(old.read("B"), full(2))
                    both = old.read_all(["A", "B"])
                    assert np.array_equal(both[0], full(1)) and np.array_equal(both[1], full(2))
                    again = reader["audio"]
                    assert again.ids == ["A", "B", "C", "D"]
                    assert np.array_equal(again.read("C"), full(7)) and np.array_equal(again.read("A"), full(1))

    def test_an_array_refilled_after_write_is_stored_as_it_was_written(self, path):
        buffer = np.zeros((5, 8), dtype=np.float16)  # already the set's dtype: nothing to convert
        with open_store(path, "a") as store, store.writer("audio", provenance()) as w:
            for i in range(3):
                buffer[:] = i  # an encoder reusing one output buffer
                w.write(f"u{i}", buffer)
        with open_store(path) as store:
            assert [float(store["audio"].read(f"u{i}")[0, 0]) for i in range(3)] == [0.0, 1.0, 2.0]
        assert features.verify(path).ok


class Refusals:
    """Calls each back-end refuses, naming the fix, with the store left as it was; mixed in as StoreSuite is."""

    def test_a_writer_refused_by_the_identity_check_leaves_no_folders_or_locks(self, path, tmp_path):
        with open_store(path, "a") as store, store.writer("audio", provenance()) as w:
            w.write("a", full(1))  # closed: the store is finished
        before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
        other = dataclasses.replace(provenance(), manifest_hash="b" * 64)
        with open_store(path, "a") as store:
            with pytest.raises(StoreError, match=r"was made with identity .* differences \(set -> this run\): manifest_hash"):
                store.writer("audio", other)
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
        with open_store(path) as store:
            assert store["audio"].ids == ["a"]

    def test_read_all_refuses_one_id_given_as_a_string(self, path):
        with open_store(path, "a") as store, store.writer("audio", provenance()) as w:
            w.write("u0", full(1))
        with open_store(path) as store:
            with pytest.raises(StoreError) as err:
                store["audio"].read_all("u0")
            assert str(err.value) == "set 'audio': read_all takes a list of ids, not the string 'u0'; pass ['u0'], or read('u0') reads one"
            assert np.array_equal(store["audio"].read_all(["u0"])[0], full(1))


class TestHDF5(StoreSuite, OtherStoreObjects, Refusals):
    suffix = ".h5"

    def test_an_hdf5_file_that_is_not_a_store_is_refused(self, tmp_path):
        import h5py

        other = tmp_path / "other.h5"
        with h5py.File(other, "w") as f:
            f["x"] = np.zeros(3)
        with pytest.raises(StoreError, match="is an HDF5 file but not an emocache feature store"):
            open_store(str(other))

    def test_segments_left_from_a_deleted_store_file_are_not_revived(self, path, tmp_path):
        with open_store(path, "a") as store, store.writer("audio", provenance()) as w:
            w.write("a", np.ones((2, 8)))
            w.commit()
            shutil.copytree(path + ".parts", tmp_path / "kept")  # segments of a store not finished yet
        Path(path).unlink()
        shutil.move(tmp_path / "kept", path + ".parts")
        with pytest.raises(StoreError) as err:
            open_store(path, "a")
        assert str(err.value) == (
            f"{path}.parts is left over from a deleted store {Path(path).name}: "
            f"delete it too (rm -r {path}.parts) to start afresh, or restore {path}"
        )
        assert not Path(path).exists()

    def data_regions(self, path):
        import h5py

        with h5py.File(path, "r") as f:
            data = f["audio/data"]
            return [(Path(path), data.id.get_offset(), data.id.get_storage_size(), 0)]


class TestZarr(StoreSuite, OtherStoreObjects, Refusals):
    suffix = ".zarr"

    def test_verify_names_the_utterances_of_a_lost_chunk(self, path, monkeypatch):
        import features.zarrchunks

        monkeypatch.setattr(features.zarrchunks, "CHUNK_BYTES", 20 * 8 * 2)  # 20 frames per chunk
        arrays = random_arrays(8, 12, 8)
        self.write(path, arrays)
        segment = Path(path) / "audio"
        (segment / "data" / "c" / "1" / "0").unlink()  # frames 20..39
        ends = np.cumsum([a.shape[0] for a in arrays.values()])
        starts = ends - [a.shape[0] for a in arrays.values()]
        lost = [u for u, a, b in zip(arrays, starts, ends) if a < 40 and b > 20]
        report = features.verify(path)
        assert [(p[1], p[2]) for p in report.problems] == [(u, "missing") for u in lost]
        assert "is missing" in report.problems[0][3]
        with open_store(path) as store:
            survivor = next(u for u in arrays if u not in lost)
            assert np.array_equal(store["audio"].read(survivor), arrays[survivor].astype(np.float16))
            with pytest.raises(StoreError, match="is missing; if a writer was compacting this part, reopen the set"):
                store["audio"].read(lost[0])

    def test_a_folder_of_other_files_is_not_made_a_store(self, tmp_path):
        folder = tmp_path / "results.zarr"
        folder.mkdir()
        (folder / "notes.txt").write_text("mine")
        with pytest.raises(StoreError, match=r"results\.zarr is a folder with other files in it \(notes\.txt\.\.\.\) but no Zarr store; give a new path"):
            open_store(str(folder), "a")
        assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]

    def test_names_ending_in_a_newline_are_not_taken_for_the_store_s_own(self, path, tmp_path):
        with open_store(path, "a") as store, store.writer("audio", provenance(), finish=False) as w:
            w.write("a", full(1))
        main = Path(path) / "audio" / "parts" / "main"
        segment = next(p for p in main.iterdir() if p.name.isdigit())
        shutil.copytree(segment, main / "00000001\n")  # not 8 digits: readers skip it (FORMAT.md)
        with open_store(path) as store:
            assert [s.seq for s in store["audio"].segments] == [int(segment.name)]
        kept = Path(path) / ".zarr.json.tmp-1\n"  # not a killed writer's temporary, which cleanup removes
        kept.write_text("mine")
        with open_store(path, "a") as store:
            store.writer("audio", provenance(), finish=False).close()  # its open cleans up
        assert kept.read_text() == "mine"
        folder = tmp_path / "results.zarr"
        folder.mkdir()
        (folder / ".writers.lock\n").write_text("mine")
        with pytest.raises(StoreError, match=r"results\.zarr is a folder with other files in it"):
            open_store(str(folder), "a")

    def test_a_zarr_group_that_is_not_a_store_is_refused(self, tmp_path):
        import zarr

        zarr.create_group(str(tmp_path / "other.zarr"))
        with pytest.raises(StoreError, match="is a Zarr group but not an emocache feature store"):
            open_store(str(tmp_path / "other.zarr"))

    def data_regions(self, path):
        import zarr

        segment = Path(path) / "audio"
        array = zarr.open_array(str(segment / "data"), mode="r")
        chunk, total = array.chunks[0], array.shape[0]
        regions = []
        for k in range(-(-total // chunk)):
            frames = min(chunk, total - k * chunk)  # the edge chunk's padding is not data
            regions.append((segment / "data" / "c" / str(k) / "0", 0, frames * 8 * 2, k * chunk))
        return regions
