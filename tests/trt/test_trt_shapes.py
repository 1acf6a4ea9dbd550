"""trtexec-style shape specs and optimization profile construction (no TensorRT needed)."""
from __future__ import annotations

import pytest

from xvdeploy.errors import XVDeployError
from xvdeploy.trt.shapes import (
    ShapeRange,
    build_profiles,
    check_profiles,
    format_shape,
    parse_shape_spec,
    profiles_as_json,
    profiles_from_json,
    static_profile,
)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("x:1x3x224x224", {"x": (1, 3, 224, 224)}),
        ("x:1x3x32x32,mask:1x1x32x32", {"x": (1, 3, 32, 32), "mask": (1, 1, 32, 32)}),
        (" x : 2X3X8X8 ", {"x": (2, 3, 8, 8)}),
        ("input:0:1x3x8x8", {"input:0": (1, 3, 8, 8)}),  # the last colon separates the dimensions
        ("'in,put:0':1x3x8x8", {"in,put:0": (1, 3, 8, 8)}),
        ('"a b":4', {"a b": (4,)}),
    ],
)
def test_parse_good_specs(spec, expected):
    assert parse_shape_spec(spec) == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "it is empty"),
        ("x", "has no ':'"),
        (":1x3", "has no input name"),
        ("x:", "must be positive integers"),
        ("x:1x3xx4", "must be positive integers"),
        ("x:1x-3", "must be positive integers"),
        ("x:1x0x4", "must be positive"),
        ("x:1.5x3", "must be positive integers"),
        ("x:1x3,,y:2", "empty entry"),
        ("x:1x3,x:2x3", "given twice"),
        ("'x:1x3", "unbalanced quote"),
        ("'x'1x3", "expected ':' after the quoted name"),
    ],
)
def test_parse_bad_specs(spec, message):
    with pytest.raises(XVDeployError) as err:
        parse_shape_spec(spec, "--min-shape")
    text = str(err.value)
    assert message in text
    assert text.startswith("bad --min-shape")
    assert "expected NAME:DxDx" in text and "\n" not in text


def test_opt_only_gives_a_static_profile():
    (profile,) = build_profiles(opt_specs=["x:1x3x8x8"])
    assert profile == {"x": ShapeRange((1, 3, 8, 8), (1, 3, 8, 8), (1, 3, 8, 8))}


def test_min_opt_max_make_one_profile_each_occurrence():
    profiles = build_profiles(
        min_specs=["x:1x3x8x8", "x:8x3x8x8"],
        opt_specs=["x:4x3x8x8", "x:16x3x8x8"],
        max_specs=["x:8x3x8x8", "x:32x3x8x8"],
    )
    assert [p["x"].opt for p in profiles] == [(4, 3, 8, 8), (16, 3, 8, 8)]
    assert profiles[1]["x"] == ShapeRange((8, 3, 8, 8), (16, 3, 8, 8), (32, 3, 8, 8))


def test_min_and_max_default_to_opt_per_input():
    (profile,) = build_profiles(min_specs=["x:1x3x8x8"], opt_specs=["x:4x3x8x8,y:1x2"])
    assert profile["x"] == ShapeRange((1, 3, 8, 8), (4, 3, 8, 8), (4, 3, 8, 8))
    assert profile["y"] == ShapeRange((1, 2), (1, 2), (1, 2))


def test_no_shapes_no_profiles():
    assert build_profiles() == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min_specs": ["x:1x3"]}, "need --opt-shape"),
        ({"opt_specs": ["x:1x3", "x:2x3"], "max_specs": ["x:4x3"]}, "--max-shape is given 1 times but --opt-shape 2"),
        ({"opt_specs": ["x:2x3"], "min_specs": ["x:4x3"]}, "min ≤ opt ≤ max"),
        ({"opt_specs": ["x:2x3"], "max_specs": ["x:1x3"]}, "min ≤ opt ≤ max"),
        ({"opt_specs": ["x:2x3"], "max_specs": ["x:2x3x1"]}, "different ranks"),
        ({"opt_specs": ["x:2x3"], "max_specs": ["y:2x3"]}, "which --opt-shape does not"),
    ],
)
def test_bad_profiles(kwargs, message):
    with pytest.raises(XVDeployError, match=message):
        build_profiles(**kwargs)


INPUTS = {"x": (-1, 3, 16, 16)}


def test_check_profiles_accepts_a_range_over_the_dynamic_dimension():
    check_profiles(build_profiles(["x:1x3x16x16"], ["x:4x3x16x16"], ["x:8x3x16x16"]), INPUTS)


def test_check_profiles_static_model_needs_no_profile():
    check_profiles([], {"x": (1, 3, 16, 16)})


@pytest.mark.parametrize(
    "profiles, message",
    [
        ([], "dynamic input shapes: x (?x3x16x16); give them with --opt-shape"),
        ([static_profile({"y": (1, 3, 16, 16)})], "no input named 'y'; its inputs are 'x'"),
        ([static_profile({"x": (1, 3, 16)})], "has 4 dimensions (?x3x16x16), the shape given has 3"),
        ([static_profile({"x": (1, 3, 32, 32)})], "fixed size 16 in dimension 2"),
    ],
)
def test_check_profiles_errors(profiles, message):
    with pytest.raises(XVDeployError) as err:
        check_profiles(profiles, INPUTS)
    assert message in str(err.value)


def test_check_profiles_each_profile_covers_every_dynamic_input():
    inputs = {"x": (-1, 3, 8, 8), "m": (-1, 1, 8, 8)}
    good = static_profile({"x": (1, 3, 8, 8), "m": (1, 1, 8, 8)})
    with pytest.raises(XVDeployError, match=r"optimization profile 1 .*no shape for the dynamic input\(s\) 'm'"):
        check_profiles([good, static_profile({"x": (2, 3, 8, 8)})], inputs)


def test_shape_range_contains_and_format():
    rng = ShapeRange((1, 3, 8, 8), (4, 3, 8, 8), (8, 3, 8, 8))
    assert rng.contains((5, 3, 8, 8)) and not rng.contains((9, 3, 8, 8)) and not rng.contains((1, 3, 8))
    assert format_shape((-1, 3, 8, 8)) == "?x3x8x8"


def test_profiles_json_round_trip():
    profiles = build_profiles(["x:1x3x8x8"], ["x:2x3x8x8"], ["x:4x3x8x8"])
    assert profiles_from_json(profiles_as_json(profiles)) == profiles
