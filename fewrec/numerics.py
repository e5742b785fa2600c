"""Pins the numeric kernels that a figure depends on, so that it is the same on any machine.

OpenBLAS picks its kernels by processor: on the same data, implicit's ALS trained with the
Haswell, Sandybridge and Nehalem kernels gives three different sets of factors, and after the
ALS baseline's grid search the temporal figures differ in the third decimal. On an x86-64
processor with AVX2 and FMA (most since 2013, CI's included) fewrec asks OpenBLAS for its
Haswell kernels, so a processor with AVX-512 computes what one without it does. It has to be
set before numpy loads OpenBLAS, so `fewrec/__init__.py` calls `pin_blas_kernel` first. An
OPENBLAS_CORETYPE already in the environment stands; processors without AVX2 (and other
architectures) keep OpenBLAS's own choice, and results.json records the kernel that ran.
Where numpy loaded first (a notebook that imports pandas before fewrec, pytest's conftest) the
process keeps OpenBLAS's choice; Ray's actors are started with the kernel the process runs
(`worker_environment`), so that a sharded run still gives the single process's bits.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

BLAS_KERNEL = "Haswell"
KERNEL_NEEDS = frozenset({"avx2", "fma"})
X86_64 = ("x86_64", "amd64")


def cpu_info(field: str, cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The first value of a field of /proc/cpuinfo ("flags", "model name"); None where the
    system does not list it."""
    try:
        with cpuinfo.open(encoding="utf-8") as lines:
            for line in lines:
                name, colon, value = line.partition(":")
                if colon and name.strip() == field:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The processor's feature flags (Linux); empty where the system does not list them."""
    return frozenset((cpu_info("flags", cpuinfo) or "").split())


def processor_name() -> str:
    return cpu_info("model name") or platform.processor()


def blas_kernel_for(machine: str, flags: frozenset[str]) -> str | None:
    """The OpenBLAS kernel to pin on this processor, or None to leave OpenBLAS its choice."""
    return BLAS_KERNEL if machine.lower() in X86_64 and flags >= KERNEL_NEEDS else None


def pin_blas_kernel() -> str | None:
    """Set OPENBLAS_CORETYPE for this process (and the workers it starts) unless the user set it
    or numpy has already loaded OpenBLAS; returns the kernel set, or None."""
    if "OPENBLAS_CORETYPE" in os.environ or "numpy" in sys.modules:
        return None
    kernel = blas_kernel_for(platform.machine(), cpu_flags())
    if kernel is not None:
        os.environ["OPENBLAS_CORETYPE"] = kernel
    return kernel


def blas_in_use() -> str:
    """The BLAS libraries loaded now and their kernels, for the provenance of a run."""
    from threadpoolctl import threadpool_info

    return ", ".join(
        sorted({f"{i.get('internal_api', '?')} {i.get('architecture', '?')}" for i in threadpool_info()
                if i.get("user_api") == "blas"})
    )  # fmt: skip


def openblas_kernel() -> str | None:
    """The kernel OpenBLAS runs in this process ("Haswell"), None where numpy's BLAS is not
    OpenBLAS. It is the process's own: the pin does nothing where numpy loaded first."""
    from threadpoolctl import threadpool_info

    kernels = [i.get("architecture") for i in threadpool_info() if i.get("internal_api") == "openblas"]
    return next((k for k in kernels if k), None)


def worker_environment() -> dict[str, str]:
    """What a worker process needs to compute what this one does (Ray's actors): the kernel
    this process runs, whether the pin chose it or OpenBLAS did."""
    kernel = openblas_kernel()
    return {"OPENBLAS_CORETYPE": kernel} if kernel else {}
