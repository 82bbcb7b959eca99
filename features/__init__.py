"""emocache feature stores: cached encoder outputs, one HDF5 file or Zarr tree per corpus.

    import features
    with features.open_store("iemocap.zarr") as store:
        fs = store["audio"]
        fs.info.provenance.manifest_hash
        batch = fs.read_all()            # one contiguous read per part
        x = fs.read("Ses01F_impro01_F000")

A finished store (the last writer closed, or ``store.finish()`` / ``features
compact``) is one standard HDF5 file or Zarr tree that plain h5py or zarr read:
``features/FORMAT.md`` documents it. See ``features.base`` for how writes stay
crash-safe meanwhile, ``features.store`` for the API, and ``features/SHARING.md``
for publishing a store to a lab.
"""
from features.base import STORE_DTYPES, Failure, SetInfo, StoreError, StoreLockedError, backends, register
from features.ragged import Ragged
from features.store import FeatureSet, Store, Writer, open_store
from features.verify import VerifyReport, verify

# Importing the back-ends registers them.
from features import hdf5 as _hdf5  # noqa: E402,F401
from features import zarrstore as _zarrstore  # noqa: E402,F401

__all__ = [
    "STORE_DTYPES",
    "Failure",
    "FeatureSet",
    "Ragged",
    "SetInfo",
    "Store",
    "StoreError",
    "StoreLockedError",
    "VerifyReport",
    "Writer",
    "backends",
    "open_store",
    "register",
    "verify",
]
