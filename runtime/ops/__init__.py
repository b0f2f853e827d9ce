"""Running in production: generated NATS configs and permissions, readiness, graceful shutdown,
logging, running an app.
"""
