from __future__ import annotations

import numpy as np
import torch

from xvdeploy import fold, load_checkpoint
from xvdeploy.checkpoint import read_safetensors
from xvdeploy.data import digits_split


def test_shipped_digits_checkpoint_accuracy_and_fold_predictions(digits_checkpoint):
    _, _, x_test, y_test = digits_split()
    model = load_checkpoint(digits_checkpoint)
    x = torch.from_numpy(x_test)
    with torch.no_grad():
        pred = model(x).argmax(1).numpy()
        folded_pred = fold(model)(x).argmax(1).numpy()
    accuracy = float(np.mean(pred == y_test))
    assert accuracy >= 0.95
    assert np.array_equal(pred, folded_pred)  # identical predictions after the fold
    _, meta = read_safetensors(digits_checkpoint)
    assert meta["arch"] == "xv_digits" and meta["form"] == "train"
    assert abs(float(meta["test_accuracy"]) - accuracy) < 1e-9  # the recorded number is the measured one


def test_digits_split_is_fixed():
    a, b = digits_split(), digits_split()
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert a[2].shape == (449, 1, 8, 8) and a[0].shape == (1348, 1, 8, 8)
