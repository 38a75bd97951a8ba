"""Read models folded from the log; each records the offset it has applied with its state."""
