"""The shared core of emocache: one home for each job that every package needs.

- :mod:`emocache.errors`: :class:`EmocacheError`, the base of every domain error, and the exit codes;
- :mod:`emocache.cli`: the decorator that turns domain errors into ``click.ClickException`` in all four CLIs;
- :mod:`emocache.atomic`: writing a file under a temporary name and renaming it into place;
- :mod:`emocache.scheduler`: ``--scheduler`` values, the Dask client, and "these tasks, here or on Dask".

Nothing here imports torch, h5py or zarr: every package may import it cheaply.
"""
