"""Why fewrec pins OpenBLAS's kernel (`fewrec/numerics.py`): ALS on the bundled training split
under each kernel named, one process each, and the hash of its item factors.

    python -m fewrec.fit.blas_kernels [KERNEL …]   # default: Haswell Sandybridge Nehalem

Different hashes mean the same data gives another fit, so other figures, on another processor.
"""

from __future__ import annotations

import os
import subprocess
import sys

KERNEL_CHECK = """
import hashlib
from fewrec.data import load_dataset
from fewrec.numerics import blas_in_use
from fewrec.retrieval.cf import ALS
from fewrec.retrieval.fusion import fit_data
als = ALS().fit(fit_data(load_dataset(cache_dir=None), "test"))
print(blas_in_use(), hashlib.sha256(als.model.item_factors.tobytes()).hexdigest()[:16])
"""


def main(argv: list[str] | None = None) -> None:
    kernels = (argv if argv is not None else sys.argv[1:]) or ["Haswell", "Sandybridge", "Nehalem"]
    for kernel in kernels:
        env = {**os.environ, "OPENBLAS_CORETYPE": kernel}
        done = subprocess.run([sys.executable, "-c", KERNEL_CHECK], env=env, capture_output=True, text=True)
        line = (done.stdout.strip().splitlines() or [done.stderr.strip()[-200:]])[-1]
        ran = f" {kernel}" in f" {line.split(',')[0]}"
        print(f"{kernel}: {line}" + ("" if ran else f"  (OpenBLAS did not run a kernel named {kernel})"))


if __name__ == "__main__":
    main()
