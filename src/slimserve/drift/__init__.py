"""Drift monitoring: a training-time reference profile, bin counts in a sliding window, PSI and a test.

`init_app` gives every model whose manifest has a `drift_reference` a DriftMonitor fed by the observed
runtime (slimserve.observed), serves `GET /models/<name>/drift` and adds the same numbers to /metrics.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Monitors for the models that have a reference, the drift route, metrics and persistence."""
    from slimserve.drift.views import bp

    cfg = app.config
    registry = app.extensions["slimserve.registry"]
    monitors: dict[str, Any] = {}
    store_choice = (cfg.get("DRIFT_STORE") or "auto").strip().lower()
    if store_choice not in ("auto", "memory", "postgres", "off"):
        raise ValueError("SLIMSERVE_DRIFT_STORE must be auto, memory, postgres or off")
    app.extensions["slimserve.drift"] = {"monitors": monitors, "thresholds": None, "store": "off"}
    app.register_blueprint(bp)
    if store_choice == "off":
        return
    referenced = [name for name, entry in registry.entries.items() if entry.manifest.drift_reference]
    if not referenced:  # e.g. the X-ray model alone: the monitoring code is not even imported
        app.extensions["slimserve.drift"]["store"] = _persistence(app, store_choice, monitors)
        return
    from slimserve.drift.monitor import DriftMonitor, Thresholds
    from slimserve.drift.profile import image_statistics, profile_from_dict
    from slimserve.drift.views import drift_collector

    thresholds = Thresholds(psi_warn=cfg["DRIFT_PSI_WARN"], psi_drift=cfg["DRIFT_PSI_DRIFT"],
                            alpha=cfg["DRIFT_ALPHA"], min_rows=cfg["DRIFT_MIN_ROWS"])
    app.extensions["slimserve.drift"]["thresholds"] = thresholds
    for name in referenced:
        monitors[name] = DriftMonitor(profile_from_dict(registry.entries[name].manifest.drift_reference),
                                      cfg["DRIFT_WINDOW"])

    def observe(entry, inputs: Any, probabilities) -> None:
        monitor = monitors.get(entry.manifest.name)
        if monitor is not None:
            monitor.update(inputs if isinstance(inputs, dict) else image_statistics(inputs), probabilities)

    for name in monitors:
        runtime = registry.entries[name].runtime
        if hasattr(runtime, "observers"):
            runtime.observers.append(observe)
    metrics = app.extensions.get("slimserve.metrics")
    if metrics is not None:
        metrics.add_collector(lambda: drift_collector(registry, monitors, thresholds))
    app.extensions["slimserve.drift"]["store"] = _persistence(app, store_choice, monitors)


def _persistence(app: Flask, choice: str, monitors: dict) -> str:
    """Restore and keep saving the counts in PostgreSQL when configured; returns the store's name."""
    url = app.config.get("DATABASE_URL")
    if choice == "memory" or (choice == "auto" and not url) or not monitors:
        if monitors:
            log.warning("drift counts are kept in memory only: they restart empty with the process "
                        "(set DATABASE_URL to keep them)")
        return "memory"
    if not url:
        raise ValueError("SLIMSERVE_DRIFT_STORE=postgres needs DATABASE_URL")
    from slimserve.drift.store import Flusher, PostgresDriftStore

    store = PostgresDriftStore(url)
    registry = app.extensions["slimserve.registry"]
    for name, monitor in monitors.items():
        try:
            state = store.load(name, registry.entries[name].manifest.version)
        except Exception as exc:  # serve anyway; the counts then start empty
            log.warning("drift counts of %s could not be restored: %s", name, exc.__class__.__name__)
            continue
        if state and not monitor.restore(state):
            log.warning("saved drift counts of %s do not fit its reference; starting empty", name)
    keyed = {(name, registry.entries[name].manifest.version): m for name, m in monitors.items()}
    flusher = Flusher(store, lambda: keyed, app.config["DRIFT_FLUSH_SECONDS"])
    app.extensions["slimserve.drift"]["flusher"] = flusher
    flusher.start()
    return "postgresql"
