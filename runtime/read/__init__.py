"""The read side: projection replicas, their consumer, position, poison policy, snapshots, rebuild,
status and queries.
"""
