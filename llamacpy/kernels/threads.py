"""Thread counts for numba's pool and for BLAS, set together and deliberately.

Decode is bandwidth-bound and these machines have few cores, so the default is one thread per physical
core (hyper-threads only add contention). numba's thread count is per calling thread, so the kernels
re-apply it when called from a thread other than the one that set it.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numba


def physical_cores() -> int:
    """Distinct (package, core) pairs among the CPUs this process may run on; os.cpu_count() otherwise."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
    cores = set()
    for c in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{c}/topology")
        try:
            cores.add(
                ((topo / "physical_package_id").read_text().strip(), (topo / "core_id").read_text().strip())
            )
        except OSError:
            return len(cpus)
    return max(1, len(cores))


@dataclass
class _ThreadSettings:
    n: int = 0  # 0 = not chosen yet
    applied_in: int = -1  # threading.get_ident() of the thread numba's count was last set in
    blas_limiter: object = None


SETTINGS = _ThreadSettings()


def set_num_threads(n: int | None = None) -> int:
    """Size numba's pool and BLAS's to `n` threads (default: physical cores); returns the count used."""
    n = physical_cores() if n is None or n <= 0 else int(n)
    n = min(n, numba.config.NUMBA_NUM_THREADS)
    SETTINGS.n = n
    numba.set_num_threads(n)
    SETTINGS.applied_in = threading.get_ident()
    from threadpoolctl import threadpool_limits  # imported lazily: it inspects loaded libraries

    SETTINGS.blas_limiter = threadpool_limits(limits=n, user_api="blas")
    return n


def ensure_threads() -> None:
    """Apply the chosen thread count in the calling thread (choosing the default on first use)."""
    if SETTINGS.n == 0:
        set_num_threads()
    elif SETTINGS.applied_in != threading.get_ident():
        numba.set_num_threads(SETTINGS.n)
        SETTINGS.applied_in = threading.get_ident()
