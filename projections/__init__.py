"""Example read models (see runtime.Projection)."""
PROJECTIONS: tuple[object, ...] = ()
