"""Tensors over HTTP: .npy and JSON bodies, and the request rules (no server needed)."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest

from xvdeploy.serve.wire import JSON, NPY, InputRule, RequestError, decode_npy, decode_request, encode_npy, encode_response

RULE = InputRule("input", "float32", (-1, 1, -1, -1), max_batch=8, max_bytes=64 << 10, max_json_elements=1000)


def test_npy_round_trip_and_answer_in_kind():
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    got, kind = decode_request(encode_npy(x), "application/x-npy; charset=binary", RULE)
    assert kind == NPY and got.dtype == np.float32 and np.array_equal(got, x)
    big_endian = x.astype(">f4")
    got, _ = decode_request(encode_npy(big_endian), NPY, RULE)
    assert got.dtype == np.dtype("float32") and np.array_equal(got, x)
    body, media = encode_response(got[:, 0, 0, :3], NPY)
    assert media == NPY and np.array_equal(decode_npy(body), x[:, 0, 0, :3])


def test_json_round_trip():
    x = np.arange(2 * 1 * 3 * 3, dtype=np.float32).reshape(2, 1, 3, 3) / 7
    got, kind = decode_request(json.dumps({"inputs": x.tolist()}).encode(), "application/json", RULE)
    assert kind == JSON and got.dtype == np.float32 and np.allclose(got, x)
    body, media = encode_response(np.ones((2, 10), np.float32), JSON)
    answer = json.loads(body)
    assert media == JSON and answer["shape"] == [2, 10] and answer["dtype"] == "float32"


@pytest.mark.parametrize("array, fragment", [
    (np.zeros((1, 3, 8, 8), np.float32), "dimension 1 is 3, the model's is 1"),
    (np.zeros((1, 1, 8), np.float32), "3 dimensions"),
    (np.zeros((1, 1, 8, 8), np.float64), "dtype float64; expected float32"),
    (np.zeros((1, 1, 8, 8), np.int32), "dtype int32"),
    (np.zeros((9, 1, 8, 8), np.float32), "batch of 9; the limit is 8"),
    (np.zeros((0, 1, 8, 8), np.float32), "empty"),
    (np.full((1, 1, 2, 2), np.nan, np.float32), "NaN"),
    (np.zeros((1, 1, 200, 200), np.float32), "the limit is 65,536"),
])
def test_bad_npy_requests_say_what_was_expected(array, fragment):
    with pytest.raises(RequestError) as info:
        decode_request(encode_npy(array), NPY, RULE)
    message = str(info.value)
    assert fragment in message and "\n" not in message


def test_pickled_and_garbage_bodies_are_refused_without_unpickling():
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(RequestError, match="without unpickling"):
        decode_request(buf.getvalue(), NPY, RULE)
    with pytest.raises(RequestError, match="not a .npy array"):
        decode_request(b"hello", NPY, RULE)
    with pytest.raises(RequestError, match="damaged"):
        decode_request(encode_npy(np.zeros((1, 1, 8, 8), np.float32))[:-10], NPY, RULE)


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "the key \"inputs\""),
    (json.dumps({"inputs": [[1, 2], [3]]}).encode(), "rectangular"),
    (json.dumps({"inputs": [["a"]]}).encode(), "numbers"),
    (json.dumps({"inputs": np.zeros((1, 1, 40, 40)).tolist()}).encode(), "JSON is for small inputs"),
])
def test_bad_json_requests(body, fragment):
    with pytest.raises(RequestError, match=fragment):
        decode_request(body, JSON, RULE)


def test_unknown_content_type():
    with pytest.raises(RequestError, match="Content-Type 'text/plain' is not supported"):
        decode_request(b"1", "text/plain", RULE)
    with pytest.raises(RequestError, match="Content-Type '\\(none\\)'"):
        decode_request(b"1", None, RULE)


def test_fixed_batch_model_takes_exactly_its_batch():
    rule = InputRule("x", "float32", (4, 3, 8, 8), max_batch=4, max_bytes=1 << 20)
    decode_request(encode_npy(np.zeros((4, 3, 8, 8), np.float32)), NPY, rule)
    with pytest.raises(RequestError, match="dimension 0 is 1, the model's is 4"):
        decode_request(encode_npy(np.zeros((1, 3, 8, 8), np.float32)), NPY, rule)
