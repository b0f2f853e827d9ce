"""Everything that talks to NATS: connection, embedded server, raw JetStream calls, stream and
bucket set-up, micro services, and the translation of nats-py errors.
"""
