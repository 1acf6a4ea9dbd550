"""Tensors over HTTP for ``xvdeploy serve``: ``.npy`` bodies and JSON, and the checks a request must pass.

* ``Content-Type: application/x-npy``: the body is one array as ``numpy.save``
  writes it (read with ``allow_pickle=False``: no object arrays, nothing is
  unpickled); the answer is the output array, also ``.npy``.
* ``Content-Type: application/json``: ``{"inputs": [[[[…]]]]}`` (nested
  lists, for small inputs); the answer is ``{"outputs": …, "shape": […],
  "dtype": "float32"}``.

A request that breaks a rule gets :class:`RequestError` (HTTP 400) whose
message says what was wrong and what was expected; the replica stays up.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np

from xvdeploy.errors import XVDeployError, first_line

NPY = "application/x-npy"
JSON = "application/json"


class RequestError(XVDeployError):
    """A request the server refuses (HTTP 400): one line, what was wrong and what was expected."""


@dataclass(frozen=True)
class InputRule:
    """What one request's input must look like."""

    name: str
    dtype: str  # numpy dtype name, "float32"
    dims: tuple[int, ...]  # the model's declared dimensions, -1 where dynamic; dims[0] is the batch
    max_batch: int  # most samples in one request
    max_bytes: int  # largest body
    max_json_elements: int = 65536  # JSON is for small inputs

    def expected(self) -> str:
        dims = ["N" if i == 0 and d < 0 else ("?" if d < 0 else str(d)) for i, d in enumerate(self.dims)]
        batch = f", N ≤ {self.max_batch}" if self.dims and self.dims[0] < 0 else ""
        return f"{self.dtype} {'x'.join(dims)}{batch}"


def encode_npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def decode_npy(body: bytes) -> np.ndarray:
    """The one array of a ``.npy`` body (object arrays refused: nothing is unpickled)."""
    if not body.startswith(b"\x93NUMPY"):
        raise RequestError("the body is not a .npy array (no .npy header); send numpy.save output with "
                           f"Content-Type: {NPY}")
    try:
        return np.lib.format.read_array(io.BytesIO(body), allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise RequestError("the .npy body holds Python objects, which cannot be read without unpickling; "
                               "send a numeric array") from None
        raise RequestError(f"the .npy body is damaged ({first_line(exc)}); send numpy.save output") from None
    except Exception as exc:
        raise RequestError(f"the .npy body is damaged ({type(exc).__name__}: {first_line(exc)}); "
                           "send numpy.save output") from None


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def decode_request(body: bytes, content_type: str | None, rule: InputRule) -> tuple[np.ndarray, str]:
    """The checked input array of one request and the media type to answer in."""
    kind = media_type(content_type)
    if len(body) > rule.max_bytes:
        raise RequestError(f"the body is {len(body):,} bytes; the limit is {rule.max_bytes:,} "
                           "(serve --max-request-mb)")
    if kind == NPY:
        x = decode_npy(body)
        if x.dtype.name != rule.dtype:  # either byte order
            raise RequestError(f"input {rule.name!r} has dtype {x.dtype.name}; expected {rule.expected()}")
        x = x.astype(rule.dtype, copy=False)  # native byte order
    elif kind == JSON:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RequestError(f"the body is not JSON ({exc}); expected {{\"inputs\": nested lists}}") from None
        if not isinstance(data, dict) or "inputs" not in data:
            raise RequestError("a JSON body must be an object with the key \"inputs\" (nested lists of numbers)")
        try:
            x = np.asarray(data["inputs"], dtype=np.float64)
        except (ValueError, TypeError):
            raise RequestError("\"inputs\" must be nested lists of numbers of one rectangular shape") from None
        if x.size > rule.max_json_elements:
            raise RequestError(f"the JSON input has {x.size:,} numbers; JSON is for small inputs (at most "
                               f"{rule.max_json_elements:,}): send larger ones as application/x-npy")
        x = x.astype(rule.dtype)
    else:
        raise RequestError(f"Content-Type {content_type or '(none)'!r} is not supported; "
                           f"send {NPY} (numpy.save) or {JSON}")
    check_shape(x, rule)
    return np.ascontiguousarray(x), kind


def check_shape(x: np.ndarray, rule: InputRule) -> None:
    shape = "x".join(map(str, x.shape)) or "scalar"
    if x.ndim != len(rule.dims):
        raise RequestError(f"input {rule.name!r} has shape {shape} ({x.ndim} dimensions); expected {rule.expected()}")
    if x.size == 0:
        raise RequestError(f"input {rule.name!r} has shape {shape}, which is empty; expected {rule.expected()}")
    for axis, (got, want) in enumerate(zip(x.shape, rule.dims)):
        if want >= 0 and got != want:
            raise RequestError(f"input {rule.name!r} has shape {shape}: dimension {axis} is {got}, the model's is "
                               f"{want}; expected {rule.expected()}")
    if rule.dims and rule.dims[0] < 0 and x.shape[0] > rule.max_batch:
        raise RequestError(f"input {rule.name!r} has a batch of {x.shape[0]}; the limit is {rule.max_batch} "
                           "(serve --max-batch)")
    if not np.isfinite(x).all():
        raise RequestError(f"input {rule.name!r} holds NaN or infinite values; expected finite numbers")


def encode_response(y: np.ndarray, kind: str) -> tuple[bytes, str]:
    """The body and Content-Type answering a request of media type ``kind``."""
    if kind == JSON:
        body = {"outputs": y.tolist(), "shape": list(y.shape), "dtype": y.dtype.name}
        return json.dumps(body).encode(), JSON
    return encode_npy(y), NPY


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()
