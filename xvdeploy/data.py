"""Input data for parity checks and benchmarks: random tensors, the digits set, image folders."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from xvdeploy._lazy import require
from xvdeploy.errors import XVDeployError

#: Held-out split of scikit-learn's digits data used by the shipped ``xv_digits`` model.
DIGITS_TEST_FRACTION = 0.25
DIGITS_SPLIT_SEED = 0


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: scikit-learn's digits as float32 N×1×8×8 in [0, 1].

    The split is fixed (every 4th sample after a seeded permutation is held out),
    so accuracy is comparable across forms, backends and runs.
    """
    datasets = require("sklearn.datasets", "The digits data set")
    bunch = datasets.load_digits()
    x = (bunch.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(x))
    n_test = int(round(len(x) * DIGITS_TEST_FRACTION))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def random_input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Standard-normal float32 input of ``shape`` from a seeded generator."""
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def load_images(folder: str | Path, shape: tuple[int, int, int], limit: int | None = None) -> np.ndarray:
    """Images of ``folder`` read with Pillow, resized to ``shape`` (C, H, W), normalised, N×C×H×W float32."""
    image_mod = require("PIL.Image", "Reading images")
    folder = Path(folder)
    if not folder.is_dir():
        raise XVDeployError(f"image folder {str(folder)!r} does not exist; expected a directory of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise XVDeployError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {str(folder)!r}")
    c, h, w = shape
    if c not in (1, 3):
        raise XVDeployError(f"images can feed only 1- or 3-channel inputs, the model takes {c}")
    out = []
    for f in files:
        try:
            with image_mod.open(f) as im:
                im = im.convert("RGB" if c == 3 else "L").resize((w, h), image_mod.BILINEAR)
                a = np.asarray(im, dtype=np.float32) / 255.0
        except OSError as exc:
            raise XVDeployError(f"cannot read image {str(f)!r}: {exc}") from None
        a = a.reshape(h, w, c).transpose(2, 0, 1)
        if c == 3:
            a = (a - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]
        out.append(a)
    return np.stack(out).astype(np.float32)


def run_batches(runner_infer: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: int) -> np.ndarray:
    """Outputs for all of ``x`` in chunks of ``batch``; a short last chunk is padded (fixed-batch models)."""
    outs = []
    for i in range(0, len(x), batch):
        chunk = x[i:i + batch]
        if len(chunk) < batch:
            pad = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)])
            outs.append(runner_infer(pad)[:len(chunk)])
        else:
            outs.append(runner_infer(chunk))
    return np.concatenate(outs)
