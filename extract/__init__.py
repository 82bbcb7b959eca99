"""emocache: extract."""
