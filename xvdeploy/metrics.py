"""Parity and latency statistics: what ``xvdeploy bench`` and ``xvdeploy loadtest`` report (one definition).

Pure numpy, no other part of the package: the bench and the serving layer share it.
"""
from __future__ import annotations

import numpy as np

#: rel-L2 tolerance against the float32 training form, per precision. int8: 8-bit per-tensor activations
#: put ~1e-2 on the logits (measured 1.1e-2 to 2.0e-2 on the digits model and a random xv_resnet50_s3,
#: docs/benchmarks.md); 5e-2 leaves room for deeper nets and still fails a broken placement (8.4e-2 with one
#: scale over concat[X, T] on the digits model).
TOLERANCES = {"fp32": 1e-5, "tf32": 1e-3, "fp16": 1e-2, "bf16": 1e-2, "int8": 5e-2}


def parity(y: np.ndarray, ref: np.ndarray, classifier: bool = True) -> dict:
    """``max_abs``, ``rel_l2``, ``cosine`` and (classifiers) ``top1_agreement`` of ``y`` against ``ref``."""
    y64, r64 = y.astype(np.float64).reshape(len(y), -1), ref.astype(np.float64).reshape(len(ref), -1)
    if not (np.isfinite(y64).all() and np.isfinite(r64).all()):  # no metric means anything: say so in every one
        nan = float("nan")
        return {"max_abs": nan, "rel_l2": nan, "cosine": nan, "top1_agreement": None if not classifier else nan}
    diff = y64 - r64
    ref_norm = float(np.linalg.norm(r64))
    out = {
        "max_abs": float(np.abs(diff).max()) if diff.size else 0.0,
        "rel_l2": float(np.linalg.norm(diff) / ref_norm) if ref_norm > 0 else float(np.linalg.norm(diff)),
        "cosine": _cosine(y64, r64, ref_norm),
        "top1_agreement": None,
    }
    if classifier and y64.ndim == 2 and y64.shape[1] > 1:
        out["top1_agreement"] = float(np.mean(y64.argmax(1) == r64.argmax(1)))
    return out


def _cosine(y64: np.ndarray, r64: np.ndarray, ref_norm: float) -> float:
    """Cosine similarity, clamped to [-1, 1] (rounding puts identical vectors at 1 + 1e-16)."""
    y_norm = float(np.linalg.norm(y64))
    if ref_norm == 0 or y_norm == 0:
        return 1.0 if ref_norm == y_norm else 0.0
    return float(min(1.0, max(-1.0, (y64 * r64).sum() / (y_norm * ref_norm))))


def variation(times_ms: list[float]) -> float | None:
    """Coefficient of variation of the latencies (sample std / mean); None below two samples."""
    t = np.asarray(times_ms, dtype=np.float64)
    if t.size < 2 or not t.mean() > 0:
        return None
    return float(t.std(ddof=1) / t.mean())


def latency_stats(times_ms: list[float]) -> dict:
    """p50/p90/p99/mean/min/max in milliseconds."""
    t = np.asarray(times_ms, dtype=np.float64)
    if t.size == 0:
        return {k: None for k in ("p50", "p90", "p99", "mean", "min", "max")}
    return {"p50": float(np.percentile(t, 50)), "p90": float(np.percentile(t, 90)),
            "p99": float(np.percentile(t, 99)), "mean": float(t.mean()), "min": float(t.min()), "max": float(t.max())}
