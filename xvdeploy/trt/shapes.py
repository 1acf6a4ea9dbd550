"""Input shapes for TensorRT optimization profiles, in ``trtexec`` syntax.

A spec names each input and its dimensions: ``x:1x3x224x224`` or, for several
inputs, ``x:1x3x224x224,mask:1x1x224x224``. A name that itself contains a
comma or colon is quoted: ``'input:0':1x3x32x32``.

``--min-shape`` / ``--opt-shape`` / ``--max-shape`` given once make one
optimization profile; the i-th occurrence of each makes profile i. ``min`` and
``max`` default to ``opt`` (a static profile), as in ``trtexec``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from xvdeploy.errors import XVDeployError

Shape = tuple[int, ...]
#: Dimensions as declared by the model: ``-1`` for a dynamic (named or unknown) dimension.
DeclaredShape = tuple[int, ...]

SPEC_EXAMPLE = "NAME:DxDx…[,NAME:DxD…], e.g. x:1x3x224x224"


@dataclass(frozen=True)
class ShapeRange:
    """The ``min ≤ opt ≤ max`` shapes of one input in one optimization profile."""

    min: Shape
    opt: Shape
    max: Shape

    def as_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    def contains(self, shape: Sequence[int]) -> bool:
        return len(shape) == len(self.min) and all(lo <= d <= hi for lo, d, hi in zip(self.min, shape, self.max))


#: One optimization profile: input name → shape range.
Profile = dict[str, ShapeRange]


def _bad(option: str, spec: str, why: str) -> XVDeployError:
    return XVDeployError(f"bad {option} {spec!r}: {why}; expected {SPEC_EXAMPLE}")


def _split_entries(spec: str, option: str) -> list[str]:
    """Split at commas outside single or double quotes."""
    entries, current, quote = [], [], None
    for ch in spec:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
            current.append(ch)
        elif ch == ",":
            entries.append("".join(current))
            current = []
        else:
            current.append(ch)
    if quote:
        raise _bad(option, spec, "unbalanced quote")
    entries.append("".join(current))
    return entries


def _parse_dims(text: str, option: str, spec: str, name: str) -> Shape:
    parts = text.strip().lower().split("x")
    if text.strip() == "" or any(not p.strip().isdigit() for p in parts):
        raise _bad(option, spec, f"the dimensions of {name!r} must be positive integers joined by 'x', got {text!r}")
    dims = tuple(int(p) for p in parts)
    if any(d < 1 for d in dims):
        raise _bad(option, spec, f"the dimensions of {name!r} must be positive, got {text!r}")
    return dims


def parse_shape_spec(spec: str, option: str = "--opt-shape") -> dict[str, Shape]:
    """``"x:1x3x224x224,y:1x8"`` → ``{"x": (1, 3, 224, 224), "y": (1, 8)}`` (``option`` names the flag in errors)."""
    if not spec or not spec.strip():
        raise _bad(option, spec, "it is empty")
    shapes: dict[str, Shape] = {}
    for entry in _split_entries(spec, option):
        entry = entry.strip()
        if not entry:
            raise _bad(option, spec, "it has an empty entry (stray comma?)")
        if entry[0] in "'\"":
            end = entry.find(entry[0], 1)
            name, rest = entry[1:end], entry[end + 1:]
            if not rest.startswith(":"):
                raise _bad(option, spec, f"expected ':' after the quoted name {name!r}")
            dims_text = rest[1:]
        else:
            name, sep, dims_text = entry.rpartition(":")
            if not sep:
                raise _bad(option, spec, f"{entry!r} has no ':' between the input name and its dimensions")
        name = name.strip()
        if not name:
            raise _bad(option, spec, f"{entry!r} has no input name")
        if name in shapes:
            raise _bad(option, spec, f"input {name!r} is given twice")
        shapes[name] = _parse_dims(dims_text, option, spec, name)
    return shapes


def format_shape(shape: Sequence[int]) -> str:
    """``(1, 3, -1, -1)`` → ``"1x3x?x?"``."""
    return "x".join(str(d) if d >= 0 else "?" for d in shape) if len(shape) else "scalar"


def build_profiles(
    min_specs: Sequence[str] = (),
    opt_specs: Sequence[str] = (),
    max_specs: Sequence[str] = (),
) -> list[Profile]:
    """Optimization profiles from repeated ``--min-shape/--opt-shape/--max-shape`` values.

    Profile ``i`` takes the i-th value of each option; ``min``/``max`` default to
    ``opt`` per input. Checks ``min ≤ opt ≤ max`` dimension by dimension.
    """
    n = len(opt_specs)
    if n == 0:
        if min_specs or max_specs:
            raise XVDeployError("--min-shape/--max-shape need --opt-shape too (the shapes TensorRT optimizes for)")
        return []
    for option, specs in (("--min-shape", min_specs), ("--max-shape", max_specs)):
        if len(specs) not in (0, n):
            raise XVDeployError(
                f"{option} is given {len(specs)} times but --opt-shape {n} times; give each once per "
                "optimization profile (or leave min/max out for a static profile)"
            )
    profiles = []
    for i in range(n):
        opt = parse_shape_spec(opt_specs[i], "--opt-shape")
        mins = parse_shape_spec(min_specs[i], "--min-shape") if min_specs else {}
        maxs = parse_shape_spec(max_specs[i], "--max-shape") if max_specs else {}
        for option, given in (("--min-shape", mins), ("--max-shape", maxs)):
            extra = sorted(set(given) - set(opt))
            if extra:
                raise XVDeployError(f"{option} names {', '.join(map(repr, extra))}, which --opt-shape does not; "
                                    "give every input its --opt-shape")
        profile: Profile = {}
        for name, o in opt.items():
            lo, hi = mins.get(name, o), maxs.get(name, o)
            if not len(lo) == len(o) == len(hi):
                raise XVDeployError(
                    f"input {name!r}: min/opt/max shapes {format_shape(lo)} / {format_shape(o)} / {format_shape(hi)} "
                    "have different ranks; expected the same number of dimensions"
                )
            if not all(a <= b <= c for a, b, c in zip(lo, o, hi)):
                raise XVDeployError(
                    f"input {name!r}: expected min ≤ opt ≤ max in every dimension, got "
                    f"{format_shape(lo)} / {format_shape(o)} / {format_shape(hi)}"
                )
            profile[name] = ShapeRange(lo, o, hi)
        profiles.append(profile)
    return profiles


def static_profile(shapes: Mapping[str, Sequence[int]]) -> Profile:
    """A profile with ``min = opt = max`` (what ``bench`` uses for its one input shape)."""
    return {name: ShapeRange(tuple(s), tuple(s), tuple(s)) for name, s in shapes.items()}


def check_profiles(profiles: Sequence[Profile], inputs: Mapping[str, DeclaredShape]) -> None:
    """Check profiles against the model's inputs (``-1`` = dynamic dimension).

    Every dynamic input needs a range in every profile; names must exist, ranks
    must match, and fixed dimensions may not be overridden.
    """
    dynamic = {name: shape for name, shape in inputs.items() if any(d < 0 for d in shape)}
    if not profiles:
        if dynamic:
            listed = ", ".join(f"{n} ({format_shape(s)})" for n, s in dynamic.items())
            example = ",".join(f"{n}:{'x'.join(str(d if d >= 0 else 1) for d in s)}" for n, s in dynamic.items())
            raise XVDeployError(f"the model has dynamic input shapes: {listed}; give them with --opt-shape "
                                f"(and --min-shape/--max-shape for a range), e.g. --opt-shape {example}")
        return
    for i, profile in enumerate(profiles):
        where = ("shape options" if len(profiles) == 1
                 else f"optimization profile {i} (occurrence {i + 1} of the shape options)")
        unknown = sorted(set(profile) - set(inputs))
        if unknown:
            raise XVDeployError(f"{where}: the model has no input named {', '.join(map(repr, unknown))}; "
                                f"its inputs are {', '.join(map(repr, inputs)) or '(none)'}")
        missing = [n for n in dynamic if n not in profile]
        if missing:
            raise XVDeployError(f"{where}: no shape for the dynamic input(s) "
                                f"{', '.join(f'{n!r} ({format_shape(dynamic[n])})' for n in missing)}")
        for name, rng in profile.items():
            declared = inputs[name]
            if len(rng.opt) != len(declared):
                raise XVDeployError(f"{where}: input {name!r} has {len(declared)} dimensions "
                                    f"({format_shape(declared)}), "
                                    f"the shape given has {len(rng.opt)} ({format_shape(rng.opt)})")
            for axis, d in enumerate(declared):
                if d >= 0 and not rng.min[axis] == rng.opt[axis] == rng.max[axis] == d:
                    raise XVDeployError(
                        f"{where}: input {name!r} has the fixed size {d} in dimension {axis} "
                        f"({format_shape(declared)}); the shapes given are {format_shape(rng.min)} / "
                        f"{format_shape(rng.opt)} / {format_shape(rng.max)} (min / opt / max)"
                    )


def profiles_as_json(profiles: Sequence[Profile]) -> list[dict[str, dict[str, list[int]]]]:
    return [{name: rng.as_dict() for name, rng in p.items()} for p in profiles]


def profiles_from_json(data: Sequence[Mapping[str, Mapping[str, Sequence[int]]]]) -> list[Profile]:
    return [{name: ShapeRange(tuple(r["min"]), tuple(r["opt"]), tuple(r["max"])) for name, r in p.items()}
            for p in data]
