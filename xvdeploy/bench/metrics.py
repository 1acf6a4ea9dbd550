"""Parity and latency statistics of one bench result, and its PASS/FAIL status.

``TOLERANCES``, ``parity`` and ``latency_stats`` live in :mod:`xvdeploy.metrics` (shared with
``xvdeploy loadtest``) and are re-exported here.
"""
from __future__ import annotations

from xvdeploy.metrics import TOLERANCES, latency_stats, parity

__all__ = ["TOLERANCES", "latency_stats", "parity", "status"]


def status(parity_result: dict | None, precision: str, accuracy: float | None = None,
           reference_accuracy: float | None = None) -> str:
    """PASS if rel-L2 is within the precision's tolerance (and accuracy equals the reference's)."""
    if parity_result is None:
        return "PASS"
    if not parity_result["rel_l2"] <= TOLERANCES[precision]:  # NaN fails too
        return "FAIL"
    if precision == "fp32" and accuracy is not None and reference_accuracy is not None and accuracy != reference_accuracy:
        return "FAIL"
    return "PASS"
