"""Exporting sweeps to other tools. :func:`export_to_mlflow` copies a sweep's runs and,
optionally, its registered models into an MLflow tracking store (``sweep[mlflow]``)."""

from sweep.export._mlflow import ExportReport, export_to_mlflow

__all__ = ["ExportReport", "export_to_mlflow"]
