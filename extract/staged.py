"""``extract run --store s3://bucket/lab.zarr``: extract into a local staging copy, publish when complete.

``features/staging.py`` holds the staging copy and its publishing; this module decides,
for one run, whether there is anything to do at all (the remote already holds the set
complete for this manifest: nothing is fetched or written), and publishes when the set
is complete in the copy (every utterance of the manifest extracted or recorded failed).
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from features import open_store
from features.provenance import Provenance
from features.records import StoreLockedError
from features.staging import StagedStore
from features.upload import PublishLockedError, UploadResult
from features.urls import is_remote
from manifests import Utterance

from .base import EncoderConfigError

if TYPE_CHECKING:
    from .pipeline import ExtractSummary


@dataclass(frozen=True)
class Publication:
    """What became of a run into a URL: ``upload`` when published, else ``reason`` why not yet."""

    url: str
    staging: str
    upload: UploadResult | None = None
    reason: str = ""

    def describe(self) -> str:
        if self.upload is not None:
            return (f"published {self.url}: {self.upload.files} files ({self.upload.bytes} bytes) uploaded and checked, "
                    f"{self.upload.removed} stale file(s) removed; staging copy kept in {self.staging}")
        return f"not published to {self.url} yet: {self.reason}; the work is kept in {self.staging}"


def staged_target(store: str | os.PathLike, staging: str | os.PathLike | None, scheduler: str | None) -> StagedStore | None:
    """The staging copy a run into ``store`` writes; None when ``store`` is a path, written in place.

    Refuses, before anything is written: http(s) URLs (read-only), URLs that are not
    s3:// Zarr stores, and a ``tcp://`` scheduler without ``--staging`` (its workers,
    on other machines, must all reach the copy)."""
    location = str(store)
    if not is_remote(location):
        if staging is not None:
            raise EncoderConfigError(f"--staging {staging}: only a run into an s3:// store is staged; {location} is written in place")
        return None
    target = StagedStore.for_url(location, staging)
    if staging is None and scheduler is not None and scheduler.startswith("tcp://"):
        raise EncoderConfigError(
            f"--scheduler {scheduler} --store {location}: the workers write a local staging copy of the store, which "
            f"workers on other machines cannot reach in {target.local.parent}; give --staging DIR on a file system "
            "that every worker shares"
        )
    return target


def remote_complete(target: StagedStore, set_name: str, prov: Provenance, rows: Sequence[Utterance],
                    retry_failed: bool, started: float) -> "ExtractSummary | None":
    """The summary of a run with nothing to do, when the remote already holds the set complete for this
    manifest (read from the remote: no staging copy needed); None when there is work."""
    from .pipeline import ExtractSummary

    if target.remote_version() is None:
        return None
    with open_store(target.url) as remote:
        if set_name not in remote:
            return None
        found = remote[set_name]
        if found.info.identity != prov.identity():
            return None  # the writer names the differences, on the staging copy
        done, failures = set(found.ids), {f.utt_id: f for f in found.failures()}
    left_failed = [r.utt_id for r in rows if r.utt_id not in done and r.utt_id in failures]
    if any(r.utt_id not in done and r.utt_id not in failures for r in rows) or (retry_failed and left_failed):
        return None
    return ExtractSummary(
        set_name=set_name, identity=prov.identity(), encoder=prov.encoder, done=0,
        skipped=len(done & {r.utt_id for r in rows}), failed=0, seconds=time.perf_counter() - started,
        failures=[(u, failures[u].stage, failures[u].error) for u in left_failed],
        failed_before=len(left_failed), already_complete=True,
    )


def publish_when_complete(target: StagedStore, summary: "ExtractSummary", rows: Sequence[Utterance]) -> "ExtractSummary":
    """Publish the staging copy when the set is complete in it; the summary says what became of it."""
    with open_store(str(target.local)) as store:
        found = store[summary.set_name]
        covered = set(found.ids) | {f.utt_id for f in found.failures()}
    left = sum(1 for r in rows if r.utt_id not in covered)
    outcome = Publication(target.url, str(target.local))
    if left:
        outcome = replace(outcome, reason=f"{left} utterance(s) of the manifest still to extract; run again to finish the set and publish it")
    else:
        try:
            outcome = replace(outcome, upload=target.publish())
        except PublishLockedError:
            raise
        except StoreLockedError:
            outcome = replace(outcome, reason="another run is writing the staging copy; the last run to finish publishes it")
    return replace(summary, publish=outcome)
