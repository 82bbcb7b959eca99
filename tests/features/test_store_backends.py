"""The store contract (``features.testing.StoreSuite``) run against each back-end on real files, and what is
particular to each."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import features
from features import StoreError, open_store
from features.testing import StoreSuite, provenance, random_arrays


class TestHDF5(StoreSuite):
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


class TestZarr(StoreSuite):
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
