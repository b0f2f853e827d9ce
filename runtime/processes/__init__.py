"""The runtime of process managers: their shared consumers, per-instance state and timers."""
