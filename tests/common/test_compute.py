"""BLAS/OpenMP thread limits around a computation (common/compute.py)."""

from __future__ import annotations

import numpy as np
import sklearn  # noqa: F401  (its OpenMP runtime loaded, as in a scoring process)
from threadpoolctl import threadpool_info

from common.compute import threads_limited


def _blas_threads() -> set[int]:
    return {int(pool["num_threads"]) for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_the_libraries_use_the_limit_inside_and_their_own_setting_after() -> None:
    assert np.ones(2) @ np.ones(2) == 2.0  # numpy's BLAS loaded
    before = _blas_threads()
    with threads_limited(1):
        assert _blas_threads() == {1}
    assert _blas_threads() == before


def test_nested_blocks_restore_what_each_found() -> None:
    before = _blas_threads()
    with threads_limited(1):
        with threads_limited(1):
            assert _blas_threads() == {1}
        assert _blas_threads() == {1}
    assert _blas_threads() == before


def test_a_limit_of_zero_leaves_the_libraries_alone() -> None:
    before = _blas_threads()
    with threads_limited(0):
        assert _blas_threads() == before
