"""fma_peak and tile_peak: the FMA loop the benchmarks divide GEMM speeds by, and the GEMM register
tile alone with its operands in L1 (rates, never timed here)."""

import math

import pytest

from nncore import _core


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("threads", [1, 2])
def test_fma_peak_is_a_positive_rate(dtype, threads):
    gflops = _core.fma_peak(dtype, 0.02, threads)
    assert math.isfinite(gflops) and gflops > 0


def test_fma_peak_defaults():
    assert _core.fma_peak(seconds=0.02) > 0


@pytest.mark.parametrize("kwargs, match", [
    ({"dtype": "float16"}, "dtype"),
    ({"seconds": 0.0}, "seconds"),
    ({"seconds": -1.0}, "seconds"),
    ({"threads": 0}, "threads"),
])
def test_fma_peak_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _core.fma_peak(**{"seconds": 0.02, **kwargs})


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tile_peak_is_a_positive_rate(dtype):
    gflops = _core.tile_peak(dtype, 0.02)
    assert math.isfinite(gflops) and gflops > 0


def test_tile_peak_defaults():
    assert _core.tile_peak(seconds=0.02) > 0


@pytest.mark.parametrize("kwargs, match", [
    ({"dtype": "float16"}, "dtype"),
    ({"dtype": "int32"}, "dtype"),
    ({"seconds": 0.0}, "seconds"),
    ({"seconds": float("nan")}, "seconds"),
    ({"seconds": 61.0}, "seconds"),
])
def test_tile_peak_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=f"tile_peak: expected .*{match}"):
        _core.tile_peak(**{"seconds": 0.02, **kwargs})


def test_tile_peak_rejects_wrong_types():
    with pytest.raises(TypeError):
        _core.tile_peak(32, 0.02)
