"""Example read models (see runtime.Projection)."""
