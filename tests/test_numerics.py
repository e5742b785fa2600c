"""The BLAS kernel pin (`fewrec/numerics.py`): implicit's ALS gives other factors with other
OpenBLAS kernels, so fewrec asks for one kernel on every x86-64 processor that has it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from fewrec.numerics import BLAS_KERNEL, blas_kernel_for, cpu_flags

AVX2 = frozenset({"sse4_2", "avx", "avx2", "fma"})
PROBE = (
    "import os, json, fewrec, numpy, threadpoolctl; "
    "print(json.dumps([os.environ.get('OPENBLAS_CORETYPE'), "
    "sorted({i.get('architecture') for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas'})]))"
)


def _probe(**env: str) -> tuple[str | None, list[str]]:
    clean = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"} | env
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=clean, capture_output=True, text=True, check=True
    )
    value, kernels = json.loads(done.stdout.strip().splitlines()[-1])
    return value, kernels


def test_every_x86_64_processor_with_avx2_gets_the_same_kernel_and_others_keep_openblas_choice():
    assert blas_kernel_for("x86_64", AVX2) == BLAS_KERNEL
    assert blas_kernel_for("x86_64", AVX2 | {"avx512f", "avx512bw", "avx512vl"}) == BLAS_KERNEL
    assert blas_kernel_for("AMD64", AVX2) == BLAS_KERNEL
    assert blas_kernel_for("x86_64", frozenset({"sse4_2", "avx"})) is None  # Haswell code would crash
    assert blas_kernel_for("aarch64", AVX2) is None


def test_importing_fewrec_first_pins_the_kernel_numpy_then_loads():
    value, kernels = _probe()
    expected = blas_kernel_for(os.uname().machine, cpu_flags())
    assert value == expected
    if expected is not None:
        assert kernels == [expected]


def test_a_kernel_the_user_chose_stands():
    value, kernels = _probe(OPENBLAS_CORETYPE="Nehalem")
    assert value == "Nehalem" and kernels == ["Nehalem"]


def test_workers_are_told_the_kernel_this_process_runs_not_the_pin():
    """numpy loaded before fewrec keeps OpenBLAS's own kernel; Ray's actors must run that one,
    or a sharded run rounds differently from the single process (tests/test_ray.py)."""
    probe = (
        "import numpy, json, fewrec; "
        "from fewrec.numerics import openblas_kernel, worker_environment; "
        "print(json.dumps([openblas_kernel(), worker_environment()]))"
    )
    for env in ({}, {"OPENBLAS_CORETYPE": "Nehalem"}):
        clean = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"} | env
        done = subprocess.run(
            [sys.executable, "-c", probe], env=clean, capture_output=True, text=True, check=True
        )
        kernel, environment = json.loads(done.stdout.strip().splitlines()[-1])
        assert kernel and environment == {"OPENBLAS_CORETYPE": kernel}
        if env:
            assert kernel == "Nehalem"  # what this process runs, which the pin would not have chosen
