"""The write side: actors, their host, the command service, the event store, aggregate snapshots,
history.
"""
