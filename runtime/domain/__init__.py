"""Definitions users write against: aggregates, projections, event schemas, the app that groups
them. Pure: no I/O.
"""
