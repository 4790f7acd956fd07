"""Reports built from result files only (no MLflow), so they rebuild anywhere without a GPU.

Import the submodule you need (`spikeattn.report.tables`, `.captions`, ...): this package
imports nothing itself, so the workflow's planning reads captions without loading pandas.
"""


def __getattr__(name: str):
    if name == "build_tables":  # the stage's entry point, kept at the package's top
        from .tables import build_tables

        return build_tables
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["build_tables"]
