"""Exporting sweeps to other tools. :func:`export_to_mlflow` copies a sweep's runs and,
optionally, its registered models into an MLflow tracking store (``sweep[mlflow]``);
:class:`MlflowMirror` does it live, as a sweep runs (``tracking.mirror: mlflow``)."""

from sweep.export._mirror import MlflowMirror
from sweep.export._mlflow import ExportReport, export_to_mlflow

__all__ = ["ExportReport", "MlflowMirror", "export_to_mlflow"]
