"""Which store locations are URLs, and which URL schemes a store may be read from.

An explicit allow-list, not "anything fsspec can open": fsspec also opens ``memory://``
(a store that exists in one process only), caching chains such as
``filecache::file://`` (which write copies to disk), ``reference://`` and remote
shells (``sftp://``) that this project has never tested. Each allowed scheme has a
test against a real server on localhost (``tests/features/test_store_http.py``,
``tests/features/test_store_s3.py``). Of them only ``s3://`` is also written, through
a local staging copy (``features/staging.py``); ``http(s)://`` stores are read-only.

Options for the fsspec file system of a scheme (an S3 endpoint, credentials profile,
anonymous access...) come from the environment variable ``EMOCACHE_STORAGE_OPTIONS``,
a JSON object keyed by scheme, so that every command and every Dask worker sees them::

    EMOCACHE_STORAGE_OPTIONS='{"s3": {"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}}'
"""
from __future__ import annotations

import importlib
import json
import os
import re
from typing import Any

from features.base import StoreError

# scheme -> (the module fsspec needs for it, how to install it); None: nothing beyond fsspec.
ALLOWED_SCHEMES: dict[str, tuple[str, str] | None] = {
    "http": ("aiohttp", "pip install aiohttp"),
    "https": ("aiohttp", "pip install aiohttp"),
    "s3": ("s3fs", 'pip install "emocache[s3]"'),
    "file": None,
}
OPTIONS_ENV = "EMOCACHE_STORAGE_OPTIONS"


# A scheme as RFC 3986 spells it, then "://", or "::" for an fsspec chain (filecache::s3://...).
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)(://|::)")


def url_scheme(location: str) -> str | None:
    """The scheme of ``location`` (lower case) when it is a URL or an fsspec chain, else None (a path)."""
    match = _URL.match(location)
    return None if match is None else match.group(1).lower()


def is_remote(location: str) -> bool:
    """Whether ``location`` is read through fsspec: True for http(s)/s3 URLs, False for paths and ``file://``.

    Any other scheme, an fsspec chain, or a missing package for an allowed scheme is a
    :class:`StoreError` naming the allowed schemes or the install command."""
    match = _URL.match(location)
    if match is None:
        return False
    scheme = match.group(1).lower()
    allowed = ", ".join(f"{s}://" for s in ALLOWED_SCHEMES)
    if match.group(2) == "::":
        raise StoreError(f"{location}: fsspec URL chains ({scheme}::...) are not supported for feature stores; "
                         f"use a local path or one of {allowed}")
    if scheme not in ALLOWED_SCHEMES:
        raise StoreError(
            f"{location}: the URL scheme {scheme!r} is not supported for feature stores; use a local path or one of {allowed}"
        )
    needs = ALLOWED_SCHEMES[scheme]
    if needs is not None:
        try:
            importlib.import_module(needs[0])
        except ImportError:
            raise StoreError(f"{location}: reading {scheme}:// stores needs the package {needs[0]}: {needs[1]}") from None
    return scheme != "file"


def storage_options(location: str) -> dict[str, Any]:
    """The fsspec options for ``location``'s scheme from ``EMOCACHE_STORAGE_OPTIONS`` ({} when unset)."""
    text = os.environ.get(OPTIONS_ENV)
    if not text:
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError as err:
        raise StoreError(f"the environment variable {OPTIONS_ENV} is not valid JSON ({err}); "
                         'write an object keyed by scheme, e.g. {"s3": {"anon": true}}') from None
    scheme = url_scheme(location)
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise StoreError(f"the environment variable {OPTIONS_ENV} must be a JSON object of objects keyed by scheme, "
                         'e.g. {"s3": {"anon": true}}')
    return dict(options.get(scheme, {}))
