"""Fixtures for every test; the code behind them is in harness.py (importable, unlike a conftest module)."""

from harness import dataset, mlflow_server_factory, postgres, s3, sqlite_server  # noqa: F401
