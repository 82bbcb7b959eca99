"""emocache: train."""
