"""Parity and latency statistics of one bench result, and its PASS/FAIL status.

``TOLERANCES``, ``parity``, ``latency_stats`` and ``variation`` live in :mod:`xvdeploy.metrics` (shared with
``xvdeploy loadtest``) and are re-exported here.
"""
from __future__ import annotations

from xvdeploy.metrics import TOLERANCES, latency_stats, parity, variation

__all__ = ["INT8_ACCURACY_DROP", "TOLERANCES", "UNSTABLE_CV", "latency_stats", "parity", "status", "variation"]

#: int8 also fails if labelled accuracy drops more than this below the reference's (issue 16: 0.5 points)
INT8_ACCURACY_DROP = 0.005
#: a row whose latencies vary more than this (coefficient of variation, std / mean) is flagged unstable.
#: trtexec warns above 1 % for GPU compute time; CPU timings on a shared machine are noisier.
UNSTABLE_CV = 0.10


def status(parity_result: dict | None, precision: str, accuracy: float | None = None,
           reference_accuracy: float | None = None) -> str:
    """PASS if rel-L2 is within the precision's tolerance (and fp32 accuracy equals the reference's, int8 accuracy
    is within :data:`INT8_ACCURACY_DROP` of it)."""
    if parity_result is None:
        return "PASS"
    if not parity_result["rel_l2"] <= TOLERANCES[precision]:  # NaN fails too
        return "FAIL"
    if accuracy is None or reference_accuracy is None:
        return "PASS"
    if precision == "fp32" and accuracy != reference_accuracy:
        return "FAIL"
    if precision == "int8" and accuracy < reference_accuracy - INT8_ACCURACY_DROP - 1e-12:
        return "FAIL"
    return "PASS"
