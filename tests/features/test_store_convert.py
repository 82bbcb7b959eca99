"""convert and merge: values, order, failures and provenance arrive bit for bit; differing identities are refused."""
from __future__ import annotations

import numpy as np
import pytest

from features import StoreError, open_store
from features.convert import convert, merge
from features.provenance import Provenance


def prov(encoder: str = "test:random", dim: int = 6, layers: int | None = None) -> Provenance:
    return Provenance.now(
        encoder=encoder, manifest_hash="b" * 64, dtype="float32", dim=dim, layers=None if layers is None else "all",
        preprocessing={"sample_rate": 16000, "crop": [0.5, 1.0]}, stats={"mean": 0.25},
    )


def fill(path: str, name: str, p: Provenance, ids: list[str], *, part=None, layers=None, seed=0, fail=()):
    rng = np.random.default_rng(seed)
    written = {}
    with open_store(path, "a") as store, store.writer(name, p, frame_rate=25.0, layers=layers, part=part) as w:
        for i, utt_id in enumerate(ids):
            shape = (int(rng.integers(1, 20)), p.dim) if layers is None else (layers, int(rng.integers(1, 20)), p.dim)
            written[utt_id] = rng.standard_normal(shape).astype(np.float32)
            w.write(utt_id, written[utt_id], {"frames_without_face": i % 3} if name == "video" else None)
            if i % 3 == 2:
                w.commit()
        for utt_id in fail:
            w.fail(utt_id, "load", f"cannot decode {utt_id}")
    return written


@pytest.mark.parametrize("src_suffix, dst_suffix", [(".h5", ".zarr"), (".zarr", ".h5")])
def test_convert_preserves_bytes_order_failures_and_provenance(tmp_path, src_suffix, dst_suffix):
    src, dst, back = (str(tmp_path / f"{n}{s}") for n, s in (("src", src_suffix), ("dst", dst_suffix), ("back", src_suffix)))
    audio = prov()
    video = prov("test:video", dim=3, layers=2)
    fill(src, "audio", audio, [f"a{i}" for i in range(10)], fail=["a_bad"])
    fill(src, "video", video, [f"v{i}" for i in range(5)], layers=2, seed=1)
    convert(src, dst)
    convert(dst, back)
    with open_store(src) as a, open_store(dst) as b, open_store(back) as c:
        assert a.set_names() == b.set_names() == c.set_names() == ["audio", "video"]
        for name in a.set_names():
            x, y, z = a[name], b[name], c[name]
            assert x.ids == y.ids == z.ids
            assert x.info.provenance.to_json() == y.info.provenance.to_json() == z.info.provenance.to_json()
            assert x.info == y.info == z.info
            assert x.failures() == y.failures() == z.failures()
            assert x.read_all().data.tobytes() == y.read_all().data.tobytes() == z.read_all().data.tobytes()
        assert [f.utt_id for f in b["audio"].failures()] == ["a_bad"]
        assert c["video"].info.counts == {"frames_without_face": 0 + 1 + 2 + 0 + 1}
        assert c["audio"].info.counts == {}
    with pytest.raises(StoreError, match="already exists; convert writes a new store"):
        convert(src, dst)


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_merge_combines_parts_and_stores(tmp_path, suffix):
    p = prov()
    one, two, dst = (str(tmp_path / f"{n}{suffix}") for n in ("one", "two", "dst"))
    values = fill(one, "audio", p, ["u0", "u1", "u2"], part="w0")
    values |= fill(one, "audio", p, ["u3", "u4"], part="w1", seed=1)
    values |= fill(two, "audio", p, ["u5", "u6"], seed=2, fail=["u9"])
    report = merge(dst, [one, two])
    assert report.copied == {"audio": 7} and report.failures == {"audio": 1}
    again = merge(dst, [one])  # already there: nothing copied twice
    assert again.copied == {"audio": 0} and again.skipped == {"audio": 5}
    with open_store(dst) as store:
        fs = store["audio"]
        assert fs.ids == [f"u{i}" for i in range(7)]
        assert len(fs.segments) == 1, "the merged set is one contiguous part"
        assert fs.info.provenance.to_json() == p.to_json()
        for utt_id, array in values.items():
            assert fs.read(utt_id).tobytes() == array.astype(np.float32).tobytes()
        assert [f.utt_id for f in fs.failures()] == ["u9"]


def test_merge_refuses_sets_whose_identities_differ(tmp_path):
    a, b = str(tmp_path / "a.zarr"), str(tmp_path / "b.h5")
    pa, pb = prov("test:one"), prov("test:two")
    fill(a, "audio", pa, ["x"])
    fill(b, "audio", pb, ["y"])
    with pytest.raises(StoreError) as caught:
        merge(a, [b])
    assert str(caught.value) == (
        f"cannot merge set 'audio': {b} has identity {pb.identity()} but {a} has identity {pa.identity()}; "
        "they were made differently (see `features info`)"
    )
    with open_store(a) as store:
        assert store["audio"].ids == ["x"]
