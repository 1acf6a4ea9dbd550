"""A quantized model measured against its float model: rel-L2 and top-1 agreement of the outputs, accuracy."""
from __future__ import annotations

import numpy as np

from xvdeploy.data import run_batches
from xvdeploy.export.onnxfile import ort_session
from xvdeploy.metrics import parity

#: batch for running dynamic-batch models over a data set
EVAL_BATCH = 64


def session(model):
    """onnxruntime CPU session of an in-memory ModelProto."""
    return ort_session(model)


def run_model(sess, x: np.ndarray, fixed_batch: int | None = None) -> np.ndarray:
    name = sess.get_inputs()[0].name
    return run_batches(lambda chunk: sess.run(None, {name: chunk})[0], x, fixed_batch or EVAL_BATCH)


def output_metrics(y: np.ndarray, ref: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """``rel_l2`` of ``y`` against ``ref``, top-1 agreement (classifiers), accuracy of both (with ``labels``)."""
    p = parity(y, ref)
    out = {"rel_l2": p["rel_l2"], "top1_agreement": p["top1_agreement"], "accuracy_float": None, "accuracy_int8": None}
    if y.ndim == 2 and y.shape[1] > 1:
        if labels is not None:
            out["accuracy_float"] = float(np.mean(ref.argmax(1) == labels))
            out["accuracy_int8"] = float(np.mean(y.argmax(1) == labels))
    return out


def compare_models(float_model, quant_model, x: np.ndarray, labels: np.ndarray | None, inp) -> dict:
    """:func:`output_metrics` of ``quant_model`` against ``float_model`` on ``x``."""
    ref = run_model(session(float_model), x, inp.fixed_batch)
    y = run_model(session(quant_model), x, inp.fixed_batch)
    return {"samples": len(x), **output_metrics(y, ref, labels)}
