"""Reports built from result files only (no MLflow), so they rebuild anywhere without a GPU."""
from .tables import build_tables

__all__ = ["build_tables"]
