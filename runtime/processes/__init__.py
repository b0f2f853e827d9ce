"""The runtime of process managers: partitioned instances with their leases and consumers,
per-instance state, parked instances and timers."""
