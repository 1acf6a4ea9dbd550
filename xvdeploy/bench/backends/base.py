"""The runner interface every backend implements (Polygraphy's runner idea).

Public methods validate state and call the ``*_impl`` hooks; runners are
context managers (``with runner: ...`` activates and releases).

Lifecycle: ``activate()`` loads (session, engine, compiled model) →
``infer(x)`` returns the output for parity checks → ``time(x, …)`` measures
per-iteration latency with I/O already on the device → ``deactivate()``
releases everything.
"""
from __future__ import annotations

import abc
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from xvdeploy.errors import XVDeployError


@dataclass
class RunnerSpec:
    """What a runner runs: backend, form, precision, device (one result row)."""

    backend: str
    form: str  # "train", "folded", "onnx", "onnx-plugin", "engine", …
    precision: str = "fp32"
    device: str = "cpu"
    options: dict = field(default_factory=dict)


class Runner(abc.ABC):
    """Base runner. Subclasses implement ``activate_impl``, ``infer_impl``,
    ``prepare_impl``, ``run_prepared_impl`` and ``deactivate_impl``.

    ``infer(x)``: float32 NCHW numpy in, float32 numpy out (host copies included).
    ``time(x, ...)``: input uploaded once by ``prepare_impl``; each timed
    iteration calls ``run_prepared_impl`` and ``synchronize_impl`` (GPU
    runners override ``timer`` to use CUDA events).
    """

    def __init__(self, spec: RunnerSpec) -> None:
        self.spec = spec
        self.is_active = False
        self.timing: dict = {}
        self._tmp: tempfile.TemporaryDirectory | None = None

    # -- lifecycle ----------------------------------------------------------------
    def activate(self) -> None:
        if self.is_active:
            return
        self.activate_impl()
        self.is_active = True

    def deactivate(self) -> None:
        if not self.is_active:
            return
        try:
            self.deactivate_impl()
        finally:
            self.is_active = False

    def __enter__(self) -> "Runner":
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def temporary_model(self, kind: str, write: Callable[[Path], None]) -> Path:
        """The path of a converted copy of the model (fp16, int8, …) that ``write(path)`` writes into this
        runner's temporary folder; :meth:`drop_temporary` (in ``deactivate_impl``) removes it, as does a
        failing ``write``."""
        self.drop_temporary()
        self._tmp = tempfile.TemporaryDirectory(prefix=f"xvdeploy-{kind}-")
        path = Path(self._tmp.name) / f"{kind}.onnx"
        try:
            write(path)
        except BaseException:
            self.drop_temporary()
            raise
        return path

    def drop_temporary(self) -> None:
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            tmp.cleanup()

    # -- work ---------------------------------------------------------------------
    def infer(self, x: np.ndarray) -> np.ndarray:
        self._require_active()
        if not isinstance(x, np.ndarray) or x.ndim != 4:
            raise XVDeployError(f"{self.name}: expected an N×C×H×W numpy array, got {getattr(x, 'shape', type(x))}")
        return np.asarray(self.infer_impl(np.ascontiguousarray(x, dtype=np.float32)), dtype=np.float32)

    def time(self, x: np.ndarray, warmup: int = 10, iters: int | None = None, warmup_s: float | None = None,
             duration_s: float | None = None, progress=None) -> list[float]:
        """Per-iteration latency in milliseconds (warm-up excluded).

        Warm-up: ``warmup_s`` seconds if given, else ``warmup`` iterations. Timed:
        with ``duration_s``, until that many seconds have passed and at least
        ``iters`` (default 1) iterations ran; without it, exactly ``iters``
        (default 50). ``progress(done, eta_seconds)`` is called after each timed
        iteration. What ran is left in :attr:`timing` (counts and seconds).
        Every amount must be finite: an infinite or NaN one would never end.
        """
        self._require_active()
        for what, value in (("warm-up iterations", warmup), ("timed iterations", iters),
                            ("warm-up seconds", warmup_s), ("timing duration", duration_s)):
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise XVDeployError(f"{self.name}: {what} must be a finite number ≥ 0, got {value}")
        self.prepare_impl(np.ascontiguousarray(x, dtype=np.float32))
        start = time.perf_counter()
        deadline = start + warmup_s if warmup_s is not None else None
        warm = 0
        while (deadline is not None and time.perf_counter() < deadline) or (deadline is None and warm < warmup):
            self.run_prepared_impl()
            warm += 1
        self.synchronize_impl()
        timed_start = time.perf_counter()
        times: list[float] = []
        if duration_s is None:
            want = 50 if iters is None else int(iters)
            stop = None
        else:
            want = 1 if iters is None else int(iters)
            stop = timed_start + duration_s
        while len(times) < want or (stop is not None and time.perf_counter() < stop):
            times.append(self.timer(self.run_prepared_impl))
            if progress is not None:
                mean_s = (time.perf_counter() - timed_start) / len(times)
                eta = max(0, want - len(times)) * mean_s
                if stop is not None:
                    eta = max(eta, stop - time.perf_counter())
                progress(len(times), eta)
        self.timing = {"warmup_iterations": warm, "warmup_seconds": timed_start - start,
                       "iterations": len(times), "timed_seconds": time.perf_counter() - timed_start}
        return times

    def timer(self, fn) -> float:
        """Milliseconds one call of ``fn`` takes, synchronised (host clock)."""
        start = time.perf_counter()
        fn()
        self.synchronize_impl()
        return (time.perf_counter() - start) * 1e3

    @property
    def name(self) -> str:
        s = self.spec
        return f"{s.backend}/{s.form}/{s.precision}/{s.device}"

    def _require_active(self) -> None:
        if not self.is_active:
            raise XVDeployError(f"{self.name}: runner is not active; call activate() or use it as a context manager")

    # -- hooks ----------------------------------------------------------------------
    @abc.abstractmethod
    def activate_impl(self) -> None: ...

    @abc.abstractmethod
    def infer_impl(self, x: np.ndarray) -> np.ndarray: ...

    @abc.abstractmethod
    def prepare_impl(self, x: np.ndarray) -> None: ...

    @abc.abstractmethod
    def run_prepared_impl(self) -> None: ...

    def synchronize_impl(self) -> None:
        """Wait for queued device work (no-op on CPU)."""

    @abc.abstractmethod
    def deactivate_impl(self) -> None: ...


class BackendUnavailable(XVDeployError):
    """A backend cannot run here; ``reason`` is shown as the skip reason."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"backend '{backend}' is unavailable: {reason}")
        self.backend = backend
        self.reason = reason
