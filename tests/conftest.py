"""Fixtures for every test; the code behind them is in harness.py (importable, unlike a conftest module)."""

from harness import (dataset, mlflow_server_factory, postgres, postgres_s3_training, s3, sqlite_server,  # noqa: F401
                     sqlite_training)  # fmt: skip
