"""A finished store is one documented file or tree: FORMAT.md's plain h5py / zarr lines read it."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import features
from features import Failure, StoreError, StoreLockedError, open_store
from features.provenance import Provenance
from features.records import SegmentIndex

FORMAT = Path(features.__file__).resolve().parent / "FORMAT.md"
UTT = "Ses01F_impro01_F000"


def prov(dim: int = 5) -> Provenance:
    return Provenance(encoder="test:format", manifest_hash="e" * 64, dtype="float16", dim=dim, host="h", created="2026-01-01")


def snippet(language: str) -> str:
    """The FORMAT.md code block that reads the store with plain h5py or zarr."""
    blocks = re.findall(r"```python\n(.*?)```", FORMAT.read_text(encoding="utf-8"), flags=re.S)
    (block,) = [b for b in blocks if re.search(rf"^import (\w+, )*{language}\b", b.splitlines()[0])]
    return block


def fill(path: str, parts: list[str], *, finish: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    values = {}
    with open_store(path, "a") as store:
        for k, part in enumerate(parts):
            with store.writer("audio", prov(), frame_rate=50.0, part=part, finish=finish) as w:
                for i in range(6):
                    utt_id = UTT if (k, i) == (0, 3) else f"{part}-{i}"
                    values[utt_id] = rng.standard_normal((int(rng.integers(1, 20)), 5)).astype(np.float16)
                    w.write(utt_id, values[utt_id], {"frames_without_face": i})
                    if i % 2:
                        w.commit()
                w.fail(f"{part}-bad", "load", "cannot decode")
    return values


@pytest.mark.parametrize("suffix, language", [(".h5", "h5py"), (".zarr", "zarr")])
def test_plain_libraries_read_a_finished_store_as_format_md_says(tmp_path, suffix, language):
    path = tmp_path / f"x{suffix}"
    values = fill(str(path), ["w0", "w1"], finish=False)  # parallel parts, as a Dask run writes them
    unfinished = Path(f"{path}.parts") if suffix == ".h5" else path / "audio" / "parts"
    assert unfinished.is_dir(), "writers with finish=False leave the segments for one finish"
    with open_store(str(path), "a") as store:
        store.finish()
    # The store is the one path it was given: no .parts, no locks, no temporaries beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    if suffix == ".zarr":
        assert sorted(p.name for p in path.iterdir()) == ["audio", "zarr.json"]
        assert sorted(p.name for p in (path / "audio").iterdir()) == ["counts", "data", "ids", "offsets", "sha256", "zarr.json"]
    scope: dict = {}
    code = snippet(language).replace('"x.h5"', repr(str(path))).replace('"x.zarr"', repr(str(path)))
    exec(compile(code, str(FORMAT), "exec"), scope)
    assert np.array_equal(scope["x"], values[UTT])
    with open_store(str(path)) as store:
        fs = store["audio"]
        assert scope["ids"] == fs.ids and len(fs.segments) == 1
        assert scope["everything"].tobytes() == fs.read_all().data.tobytes()
        assert scope["provenance"] == prov().to_json()
        assert [f.utt_id for f in fs.failures()] == ["w0-bad", "w1-bad"]
        assert fs.info.counts == {"frames_without_face": 2 * sum(range(6))}
    assert features.verify(str(path)).ok


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_adding_to_a_finished_store_reads_both_then_refinishes(tmp_path, suffix):
    path = str(tmp_path / f"x{suffix}")
    first = fill(path, ["main"], finish=True)
    with open_store(path, "a") as store:
        with store.writer("audio", prov(), part="more") as w:
            w.write("late", np.ones((3, 5)))
            w.commit()
            with open_store(path) as reader:  # finished data and a new segment, read as one set
                assert reader["audio"].ids == [*first, "late"]
                assert [s.part for s in reader["audio"].segments] == ["", "more"]
            with pytest.raises(StoreLockedError, match=r"has writers open .*run `features compact"):
                store.finish()
        with store.writer("text", prov(3)) as w:
            w.write("t", np.zeros((2, 3)))
    assert sorted(p.name for p in tmp_path.iterdir()) == [Path(path).name]
    with open_store(path) as store:
        assert store.set_names() == ["audio", "text"]
        assert store["audio"].ids == [*first, "late"] and len(store["audio"].segments) == 1
        assert np.array_equal(store["audio"].read(UTT), first[UTT])
    with open_store(path, "a") as store:
        store.delete_set("text")
    with open_store(path) as store:
        assert store.set_names() == ["audio"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [Path(path).name]
    assert features.verify(path).ok


def test_an_index_digests_to_what_format_version_2_recorded():
    # The digest emocache wrote for this index before the index became one dataclass: a change in
    # to_json's keys, value types or nesting would make every existing store read as damaged.
    index = SegmentIndex(
        ["a", "b"], np.array([3, 0]), ["0" * 64, "f" * 64],
        [Failure("c", "load", "no wav", "2026-01-01T00:00:00+00:00")], [1, 2], {"faces": [1, 0], "clips": np.array([0, 2])},
    )
    assert index.digest == "4ec81f06f6f79183f2252c3924bb50263a9e7695e274190152ec4ef6bdc91db8"
    assert SegmentIndex.from_json(index.to_json(), "here", index.digest, lambda: 3) == index
    with pytest.raises(StoreError, match=r"^here is damaged: its lengths sum to 3 frames but its data holds 4; run `features verify`"):
        SegmentIndex.from_json(index.to_json(), "here", index.digest, lambda: 4)
