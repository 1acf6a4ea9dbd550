"""Calibration data for static INT8 quantization: where it comes from, what it must look like, how it is fed.

Sources (``--calibration``): ``digits`` (the training split of the shipped
model's data; its held-out split is for accuracy), ``images:DIR`` (a folder
of images, resized and normalised like :func:`xvdeploy.data.load_images`),
or a ``.npy`` / ``.npz`` file holding an N×C×H×W array (``FILE.npz:KEY``
picks one array of several). Files are read with ``allow_pickle=False``:
a pickled array is refused, never loaded.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xvdeploy.data import digits_split, load_images
from xvdeploy.errors import XVDeployError

SOURCES = "digits, images:DIR, FILE.npy or FILE.npz[:KEY]"


@dataclass
class CalibrationSet:
    """Calibration inputs, and held-out inputs (with labels) to measure the quantized model on."""

    x: np.ndarray
    description: str
    eval_x: np.ndarray | None = None
    eval_labels: np.ndarray | None = None
    eval_description: str = ""


def load_calibration(spec: str, shape: tuple[int | None, int | None, int | None] | None,
                     limit: int | None = None, image_shape: tuple[int, int, int] | None = None) -> CalibrationSet:
    """Read ``spec`` and check it against the model's input ``(C, H, W)`` (None: any size on that axis).

    Images are resized to ``image_shape`` (default: ``shape``, when it is fixed),
    e.g. the example shape a dynamic-size export records.

    Raises :class:`XVDeployError` for an unknown source, an unreadable file, an
    empty set, a wrong shape or non-finite values.
    """
    spec = spec.strip()
    if spec == "digits":
        x_train, _, x_test, y_test = digits_split()
        out = CalibrationSet(x_train, f"digits training split ({len(x_train)} images)", x_test, y_test,
                             f"digits held-out split ({len(x_test)} images)")
    elif spec.startswith("images:") or spec == "images":
        folder = spec.partition(":")[2]
        if not folder:
            raise XVDeployError("--calibration images needs a folder: --calibration images:DIR")
        size = image_shape or (shape if shape is not None and None not in shape else None)
        if size is None:
            raise XVDeployError("the model's input size is not fixed, so images cannot be resized for it; "
                                "give the calibration data as a .npy file of N×C×H×W inputs")
        x = load_images(folder, size)
        out = CalibrationSet(x, f"{len(x)} images from {folder}")
    else:
        x, what = _load_array_file(spec)
        out = CalibrationSet(x, what)
    if limit is not None:
        out.x = out.x[:limit]
    out.x = check_calibration_array(out.x, shape, spec)
    return out


def _load_array_file(spec: str) -> tuple[np.ndarray, str]:
    path_text, key = spec, None
    if ".npz:" in spec:
        path_text, _, key = spec.rpartition(":")
    path = Path(path_text)
    if path.suffix.lower() not in (".npy", ".npz"):
        raise XVDeployError(f"unknown calibration source {spec!r}; expected {SOURCES}")
    if not path.is_file():
        raise XVDeployError(f"calibration file {str(path)!r} does not exist; expected a .npy/.npz file of "
                            "N×C×H×W inputs")
    with path.open("rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY" and not magic.startswith(b"PK"):  # numpy would take anything else for a pickle
        raise XVDeployError(f"calibration file {str(path)!r} is not a readable .npy/.npz file (no NumPy header); "
                            "expected an N×C×H×W array saved with numpy.save or numpy.savez")
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:  # object arrays need pickle: refused
        raise XVDeployError(f"calibration file {str(path)!r} cannot be read without unpickling ({exc}); "
                            "expected a plain numeric array") from None
    except (OSError, EOFError) as exc:
        raise XVDeployError(f"calibration file {str(path)!r} is not a readable .npy/.npz file ({exc})") from None
    if isinstance(loaded, np.ndarray):
        return loaded, f"{path.name} ({len(loaded) if loaded.ndim else 0} inputs)"
    with loaded:
        names = list(loaded.files)
        if key is None:
            if len(names) != 1:
                listing = ", ".join(names) or "no arrays"
                raise XVDeployError(f"{str(path)!r} holds {listing}; name the calibration array: "
                                    f"--calibration {path}:KEY")
            key = names[0]
        if key not in names:
            raise XVDeployError(f"{str(path)!r} has no array {key!r}; it holds {', '.join(names) or 'no arrays'}")
        try:
            x = loaded[key]
        except ValueError as exc:
            raise XVDeployError(f"array {key!r} of {str(path)!r} cannot be read without unpickling ({exc}); "
                                "expected a plain numeric array") from None
    return x, f"{path.name}:{key} ({len(x) if x.ndim else 0} inputs)"


def check_calibration_array(x: np.ndarray, shape: tuple[int | None, ...] | None, what: str) -> np.ndarray:
    """``x`` as contiguous float32 N×C×H×W, or one clear error (empty, wrong shape, non-numeric, non-finite)."""
    x = np.asarray(x)
    expected = "N×" + "×".join("?" if d is None else str(d) for d in shape) if shape else "N×C×H×W"
    if x.dtype.kind not in "fiub":
        raise XVDeployError(f"calibration data {what!r} has dtype {x.dtype}; expected real numbers ({expected})")
    if x.ndim == 0 or x.size == 0 or len(x) == 0:
        raise XVDeployError(f"calibration data {what!r} is empty; expected at least one {expected} input")
    if x.ndim != 4:
        raise XVDeployError(f"calibration data {what!r} has shape {'x'.join(map(str, x.shape))}; expected {expected}")
    if shape is not None:
        for axis, (got, want) in enumerate(zip(x.shape[1:], shape), start=1):
            if want is not None and got != want:
                raise XVDeployError(f"calibration data {what!r} has shape {'x'.join(map(str, x.shape))}; the model "
                                    f"takes {expected}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    bad = int(x.size - np.count_nonzero(np.isfinite(x)))
    if bad:
        raise XVDeployError(f"calibration data {what!r} holds {bad} non-finite values (NaN or ±inf); "
                            "expected finite inputs")
    return x


def batch_size_for(n: int, fixed_batch: int | None = None, largest: int = 8) -> int:
    """Batch size that splits ``n`` samples evenly (histogram calibrators need equal batches), ≤ ``largest``;
    a model with a fixed batch gets that batch."""
    if fixed_batch:
        return fixed_batch
    return max(b for b in range(1, min(n, largest) + 1) if n % b == 0)


class ArrayReader:
    """onnxruntime ``CalibrationDataReader`` over ``x`` in batches of ``batch`` (a short tail is dropped only
    for a fixed-batch model; :func:`batch_size_for` picks batches that split ``x`` evenly otherwise)."""

    def __init__(self, input_name: str, x: np.ndarray, batch: int, start: int = 0, stop: int | None = None) -> None:
        self.input_name = input_name
        self.x = x
        self.batch = batch
        self.starts = iter(range(start, (len(x) if stop is None else stop) - batch + 1, batch))

    def get_next(self) -> dict[str, np.ndarray] | None:
        i = next(self.starts, None)
        return None if i is None else {self.input_name: self.x[i:i + self.batch]}

    def __len__(self) -> int:
        return len(self.x) // self.batch


def readers(input_name: str, x: np.ndarray, batch: int, samples_per_chunk: int = 16):
    """Readers over consecutive chunks of ``x`` (whole batches, about ``samples_per_chunk`` inputs): one
    calibrator pass per chunk keeps memory bounded (onnxruntime's calibrators hold every intermediate output
    of a pass; :func:`xvdeploy.quant.core.calibrate` sizes the chunks)."""
    step = batch * max(1, samples_per_chunk // batch)
    usable = len(x) - len(x) % batch
    for start in range(0, usable, step):
        yield ArrayReader(input_name, x, batch, start, min(start + step, usable))
