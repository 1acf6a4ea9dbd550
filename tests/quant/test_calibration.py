from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from xvdeploy.errors import XVDeployError
from xvdeploy.quant.calibration import ArrayReader, batch_size_for, load_calibration, readers


def test_digits_calibrates_on_the_training_split_and_holds_out_the_test_split():
    cal = load_calibration("digits", (1, 8, 8))
    assert cal.x.shape[1:] == (1, 8, 8) and cal.eval_x.shape[1:] == (1, 8, 8)
    assert len(cal.x) + len(cal.eval_x) == 1797 and len(cal.eval_labels) == len(cal.eval_x) == 449
    assert not {a.tobytes() for a in cal.x[:200]} & {a.tobytes() for a in cal.eval_x}  # disjoint samples
    with pytest.raises(XVDeployError, match="the model takes N×3×32×32"):
        load_calibration("digits", (3, 32, 32))


def test_image_folder(tmp_path):
    for i in range(3):
        Image.fromarray(np.full((10, 12, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    cal = load_calibration(f"images:{tmp_path}", (3, 8, 8))
    assert cal.x.shape == (3, 3, 8, 8) and cal.x.dtype == np.float32 and cal.eval_x is None
    with pytest.raises(XVDeployError, match="needs a folder"):
        load_calibration("images", (3, 8, 8))
    with pytest.raises(XVDeployError, match="not fixed"):
        load_calibration(f"images:{tmp_path}", (3, None, None))


def test_npy_and_npz(tmp_path):
    x = np.random.default_rng(0).random((5, 2, 4, 4))
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "one.npz", anything=x)
    np.savez(tmp_path / "two.npz", x=x, y=np.arange(5))
    for spec in ("x.npy", "one.npz", "two.npz:x"):
        cal = load_calibration(str(tmp_path / spec), (2, None, None))  # dynamic H/W: any size
        np.testing.assert_array_equal(cal.x, x.astype(np.float32))
    assert len(load_calibration(str(tmp_path / "x.npy"), (2, 4, 4), limit=2).x) == 2
    with pytest.raises(XVDeployError, match="holds x, y; name the calibration array"):
        load_calibration(str(tmp_path / "two.npz"), (2, 4, 4))
    with pytest.raises(XVDeployError, match="has no array 'z'"):
        load_calibration(str(tmp_path / "two.npz:z"), (2, 4, 4))


@pytest.mark.parametrize("array, message", [
    (np.zeros((0, 1, 8, 8), np.float32), "is empty"),
    (np.zeros((4, 8, 8), np.float32), "has shape 4x8x8; expected N×1×8×8"),
    (np.zeros((4, 3, 8, 8), np.float32), "the model takes N×1×8×8"),
    (np.array([[[[np.nan]]]] * 2, np.float32).repeat(8, 2).repeat(8, 3), "128 non-finite values"),
    (np.full((2, 1, 8, 8), np.inf, np.float32), "non-finite"),
    (np.array(["a", "b"]), "has dtype <U1"),
])
def test_bad_calibration_arrays_are_one_clear_error(tmp_path, array, message):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(XVDeployError, match=message):
        load_calibration(str(tmp_path / "bad.npy"), (1, 8, 8))


def test_bad_sources(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(XVDeployError, match="without unpickling"):
        load_calibration(str(tmp_path / "objects.npy"), (1, 8, 8))
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(XVDeployError, match="not a readable"):
        load_calibration(str(tmp_path / "junk.npy"), (1, 8, 8))
    with pytest.raises(XVDeployError, match="does not exist"):
        load_calibration(str(tmp_path / "missing.npy"), (1, 8, 8))
    with pytest.raises(XVDeployError, match="unknown calibration source 'imagenet'"):
        load_calibration("imagenet", (1, 8, 8))


def test_readers_split_into_equal_batches_and_chunks():
    x = np.arange(1348, dtype=np.float32).reshape(-1, 1, 1, 1)
    assert batch_size_for(1348) == 4 and batch_size_for(7) == 7 and batch_size_for(17) == 1 and batch_size_for(64) == 8
    assert batch_size_for(10, fixed_batch=4) == 4
    seen = []
    for reader in readers("input", x, 4, samples_per_chunk=32):
        while (item := reader.get_next()) is not None:
            seen.append(item["input"])
    assert all(len(b) == 4 for b in seen) and np.concatenate(seen).ravel().tolist() == list(range(1348))
    assert len(ArrayReader("input", x[:10], 4)) == 2  # a fixed batch of 4 over 10 inputs: the tail of 2 is dropped
