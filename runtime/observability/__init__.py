"""What operators see of a running process: Prometheus metrics, OpenTelemetry traces, and the
``/metrics``, ``/healthz`` and ``/readyz`` endpoints.

It sits just above the transport layer so the write and read sides can report into it; it never
imports them. Everything here costs next to nothing when it is off: no metrics object means no
counting, and no OpenTelemetry SDK means no span is ever made.
"""
