"""`GET /models/<name>/drift` and the drift gauges of /metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint, current_app

from slimserve.errors import NotFound
from slimserve.registry import ModelRegistry
from slimserve.views.context import registry

if TYPE_CHECKING:
    from slimserve.drift.monitor import DriftMonitor, Thresholds

bp = Blueprint("drift", __name__)


@bp.get("/models/<name>/drift")
def model_drift(name: str):
    """Per-feature PSI and p-value against the training reference, prediction drift and a status."""
    entry = registry().get(name)
    guard = current_app.extensions.get("slimserve.auth")
    if guard is not None:
        # The same credentials as the model's predictions: comparing two reports taken around one request
        # would tell which bins that request's values fell in.
        guard.check(entry.manifest.name)
    state = current_app.extensions["slimserve.drift"]
    monitor = state["monitors"].get(entry.manifest.name)
    if monitor is None:
        raise NotFound("this model has no drift reference in its manifest (or drift monitoring is off)",
                       code="drift_not_available")
    from slimserve.drift.schemas import DriftReportSchema  # a monitor exists, so its modules are loaded

    return DriftReportSchema().dump({"model": entry.manifest.name, "version": entry.manifest.version,
                                "store": state["store"], **monitor.report(state["thresholds"])})


def drift_collector(models: ModelRegistry, monitors: dict[str, DriftMonitor], thresholds: Thresholds):
    """A collector that reports every monitor at scrape time (no cost per request)."""

    class DriftCollector:
        def collect(self):
            from prometheus_client.core import GaugeMetricFamily  # built with the other metrics, on first need

            from slimserve.drift.monitor import STATUSES

            psi = GaugeMetricFamily("slimserve_drift_psi", "PSI of the window against the training reference",
                                    labels=["model", "version", "feature"])
            p_value = GaugeMetricFamily("slimserve_drift_p_value", "Chi-square two-sample p-value vs reference",
                                        labels=["model", "version", "feature"])
            status = GaugeMetricFamily("slimserve_drift_status", "0 ok, 1 warn, 2 drift",
                                       labels=["model", "version"])
            rows = GaugeMetricFamily("slimserve_drift_window_rows", "Rows in the drift window",
                                     labels=["model", "version"])
            for name, monitor in monitors.items():
                version = models.entries[name].manifest.version
                report = monitor.report(thresholds)
                for column in [*report["features"], report["prediction"]]:
                    if column["psi"] is not None:
                        psi.add_metric([name, version, column["name"]], column["psi"])
                        p_value.add_metric([name, version, column["name"]], column["p_value"])
                status.add_metric([name, version], STATUSES.index(report["status"]))
                rows.add_metric([name, version], report["window_rows"])
            yield from (psi, p_value, status, rows)

    return DriftCollector()
