"""emocache: features."""
