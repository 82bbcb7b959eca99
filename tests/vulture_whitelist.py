"""Names the dead-code finder cannot see used (tests/test_layout.py runs vulture with this file).

Each is used by name or by a framework, never by a call vulture can follow.
"""
# ruff: noqa
# fmt: off

# Exit codes are a table: documented in every CLI's help, not all raised by name.
ERROR
USAGE

# `extract.__getattr__`: the lazy package attributes (PEP 562).
__getattr__

# Encoders and store back-ends are registered by decorator and created by name.
OpenSmileEncoder
HFAudioEncoder
MiniLMTextEncoder
HogVideoEncoder
TimmVideoEncoder
HDF5Backend
ZarrBackend

# The shared store suite: a back-end's tests subclass it (tests/features/test_store_backends.py).
StoreSuite

# click commands, called by click.
ls
formats
iemocap_command
csv_command
demo_command
summary_command
tune
ablate

# Dataclass fields written to JSON and read by people (provenance, manifest rows).
host
created
gender

# torch backend switches: set, and read by torch.
_.allow_tf32
_.fill_uninitialized_memory

# torch.nn.Module hooks, called by torch (printing a model).
extra_repr
