"""Will it fit? Memory estimates checked before a large allocation (docs/design.md#layers).

A shape such as ``1x1x100000x100000`` or a crafted ``arch_kwargs`` width would
otherwise reach the allocator, which either kills the process or takes the
machine down with it. Callers estimate what a step needs and call
:func:`check_fits`, which refuses in one line what does not fit in the memory
this process can still get (the smaller of the system's available memory and
the cgroup's limit, as a container sees it).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from xvdeploy.errors import XVDeployError
from xvdeploy.format import format_bytes

#: below this many bytes an input is not worth a traced estimate of the network's activations
_QUICK_FRACTION = 1 / 1024


def available_bytes() -> int | None:
    """Bytes this process can still allocate (``MemAvailable``, capped by a cgroup limit), or None if unknown."""
    candidates = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
                break
    except (OSError, ValueError, IndexError):
        pass
    if not candidates:
        try:
            candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, OSError, ValueError):
            pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            if limit.isdigit() and int(limit) < 1 << 60:  # "max" or a huge number: no limit
                candidates.append(max(0, int(limit) - int(Path(usage_file).read_text().strip())))
            break
        except (OSError, ValueError):
            continue
    return min(candidates) if candidates else None


def tensor_bytes(shape, itemsize: int = 4) -> int:
    """Bytes of a dense tensor of ``shape`` (exact integer arithmetic: no overflow)."""
    return math.prod(int(d) for d in shape) * itemsize


def check_fits(needed: int, what: str, hint: str) -> None:
    """Raise a one-line :class:`XVDeployError` if ``needed`` bytes exceed what is available."""
    available = available_bytes()
    if available is not None and needed > available:
        raise XVDeployError(f"{what} needs about {format_bytes(needed)} of memory, more than the "
                            f"{format_bytes(available)} available here; {hint}")


def activation_numels(model, shape) -> tuple[int, int] | None:
    """``(largest, total)`` element counts of the outputs of ``model``'s leaf modules for an input of ``shape``.

    Traced with fake tensors (``FakeTensorMode``): shapes are propagated, nothing
    is allocated, so this is safe for any shape. None if the network cannot be
    traced that way (data-dependent code) or cannot take the shape.
    """
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    sizes: list[int] = []

    def hook(_module, _args, out) -> None:
        if isinstance(out, torch.Tensor):
            sizes.append(out.numel())

    leaves = [m for m in model.modules() if not list(m.children())] or [model]
    handles = [m.register_forward_hook(hook) for m in leaves]
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    try:
        with FakeTensorMode(allow_non_fake_inputs=True), torch.no_grad():
            model(torch.empty(tuple(int(d) for d in shape), dtype=dtype))
    except Exception:  # noqa: BLE001 - any failure means "no estimate", never an error of its own
        return None
    finally:
        for h in handles:
            h.remove()
    return (max(sizes), sum(sizes)) if sizes else None


def forward_bytes(model, shape, itemsize: int = 4, keep_activations: bool = False) -> int:
    """About how many bytes one forward pass of ``model`` at ``shape`` needs.

    The input, plus four times the largest activation (a block's input, its
    output, a residual and a temporary are alive at once); with
    ``keep_activations`` (the fold check keeps every folded layer's input and
    output) twice the sum of all activations on top. Small inputs skip the
    trace: their activations fit by a wide margin.
    """
    needed = tensor_bytes(shape, itemsize)
    available = available_bytes()
    if available is not None and needed < available * _QUICK_FRACTION:
        return needed
    numels = activation_numels(model, shape)
    if numels is None:
        return needed
    largest, total = numels
    return needed + itemsize * (4 * largest + (2 * total if keep_activations else 0))


def check_forward_fits(model, shape, what: str, hint: str, itemsize: int = 4, keep_activations: bool = False) -> None:
    """:func:`check_fits` for the input alone first (cheap), then for the traced forward pass."""
    check_fits(tensor_bytes(shape, itemsize), what, hint)
    check_fits(forward_bytes(model, shape, itemsize, keep_activations), what, hint)
