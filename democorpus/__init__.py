"""The SYNTHETIC demo corpus: IEMOCAP's layout, synthetic speech, transcripts and faces; never a benchmark.

:func:`democorpus.corpus.make_demo_corpus` writes it (``manifests demo`` is its command);
:mod:`democorpus.marker` tells a folder it wrote from a real corpus. This module imports
neither the generator nor its dependencies (OpenCV, ffmpeg), so that reading the marker
stays cheap for every package that checks it.
"""
