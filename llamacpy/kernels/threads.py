"""Thread counts for numba's pool and for BLAS, set together and deliberately.

- numba gets one thread per physical core by default (decode is bandwidth-bound; hyper-threads only add
  contention). Its thread count is per calling thread, so kernels call `use_threads` (cheap when nothing
  changes) to apply it in whatever thread runs them; small GEMVs run on one thread.
- BLAS gets ONE thread by default. Both numba's OpenMP workers and OpenBLAS's spin for a while after each
  parallel call, so a numpy matmul between two GEMVs, however small, leaves two spinning pools fighting
  over the cores: measured on 2 cores, a 4 us attention matmul followed by a 220 us GEMV took 3.7 ms.
  `WeightMatrix.matmul` parallelizes its own BLAS work (one single-threaded BLAS per worker thread).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numba

# A GEMV over fewer bytes of weights than this runs single-threaded (~4 us of work: a fork-join of
# numba's OpenMP pool costs 2-3 us when its workers are spinning, measured on 2 cores).
PARALLEL_MIN_BYTES = 16 * 1024


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
    n: int = 0  # chosen thread count; 0 = not chosen yet
    blas_limiter: object = None
    blas: object = None  # threadpoolctl controller of the BLAS libraries (created on first use)
    local: threading.local = field(default_factory=threading.local)  # .current: numba's count in a thread


SETTINGS = _ThreadSettings()


def set_num_threads(n: int | None = None, blas_threads: int = 1) -> int:
    """Size numba's pool to `n` threads (default: physical cores) and BLAS's to `blas_threads`.

    Returns the numba thread count used. Leave BLAS at 1 unless the program does large numpy matmuls
    of its own and no kernel work in between (see the module docstring).
    """
    n = physical_cores() if n is None or n <= 0 else int(n)
    n = min(n, numba.config.NUMBA_NUM_THREADS)
    SETTINGS.n = n
    from threadpoolctl import threadpool_limits  # imported lazily: it inspects the loaded libraries

    SETTINGS.blas_limiter = threadpool_limits(limits=max(1, blas_threads), user_api="blas")
    use_threads(n)
    return n


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS on one thread (the caller's) for the duration: for callers that run their own threads.

    numba's OpenMP workers and OpenBLAS's both spin for a while after each parallel call, so alternating
    the two pools on two cores makes each wait for the other's spinning (measured: 10x slower).
    """
    if SETTINGS.blas is None:
        from threadpoolctl import ThreadpoolController

        SETTINGS.blas = ThreadpoolController().select(user_api="blas")
    with SETTINGS.blas.limit(limits=1):
        yield


def run_parallel(work: Callable[..., None], jobs: list[tuple]) -> None:
    """work(*job) for every job, spread over the kernel threads (the caller plus SETTINGS.n - 1 Python
    threads), each running BLAS and numba on one thread: one pool of busy threads, as `single_threaded_blas`
    explains. Jobs are taken in order by whichever thread is free (costs may differ)."""
    n = ensure_threads()
    n_thr = min(len(jobs), n if concurrent_kernels_ok() else 1)
    lock = threading.Lock()
    todo = iter(jobs)

    def loop() -> None:
        use_threads(1)
        while True:
            with lock:
                job = next(todo, None)
            if job is None:
                return
            work(*job)

    with single_threaded_blas():
        threads = [threading.Thread(target=loop) for _ in range(max(0, n_thr - 1))]
        for th in threads:
            th.start()
        loop()
        for th in threads:
            th.join()
    use_threads(n)


def concurrent_kernels_ok() -> bool:
    """Whether numba kernels may run in several Python threads at once (not with the workqueue layer)."""
    try:
        return numba.threading_layer() != "workqueue"
    except ValueError:  # no parallel kernel has run yet
        return False


def set_active_threads(n: int) -> None:
    """Change the kernels' thread count from now on (BLAS untouched): the engine's ThreadTuner."""
    SETTINGS.n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    use_threads(SETTINGS.n)


def use_threads(k: int) -> None:
    """Run the next numba kernels of the calling thread on `k` threads."""
    loc = SETTINGS.local
    if getattr(loc, "current", 0) != k:
        numba.set_num_threads(k)
        loc.current = k


def ensure_threads() -> int:
    """The chosen thread count (choosing the default on first use), applied in the calling thread."""
    if SETTINGS.n == 0:
        set_num_threads()
    use_threads(SETTINGS.n)
    return SETTINGS.n
