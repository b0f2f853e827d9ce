"""Benchmarks run by `cqrs bench`: the runtime against hand-written nats-py baselines."""
