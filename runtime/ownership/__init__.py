"""Which worker owns which commands: partitions, leases, membership and handoff."""
