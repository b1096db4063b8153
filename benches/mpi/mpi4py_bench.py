"""mpi4py.futures peer of benches/src/bin/mpi_pool.rs, in static mode:
    mpirun -np N python3 -m mpi4py.futures benches/mpi/mpi4py_bench.py
Prints `mpi4py <measure> <value> <unit>` lines, as the Rust bench."""
import os
import sys
import time

from mpi4py.futures import MPIPoolExecutor

# The PEP 371 workload, as the main job's Python side computes it.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import primes  # noqa: E402

PRIME_LIMIT = 100_000
PRIME_SUM = 454_396_537


def crunch_primes(_):
    return primes.crunch_primes(PRIME_LIMIT)


def trivial(x):
    return x + 1


def main():
    with MPIPoolExecutor() as ex:
        workers = ex.num_workers
        print(f"mpi4py workers {workers}", flush=True)
        list(ex.map(trivial, range(500), chunksize=1))  # warm-up
        for n, cs in ((5_000, 1), (1_000_000, 64)):
            t = time.perf_counter()
            r = list(ex.map(trivial, range(n), chunksize=cs))
            t = time.perf_counter() - t
            assert r[7] == 8
            print(f"mpi4py trivial/chunksize={cs} {n / t:.0f} tasks/s", flush=True)
        # Python's Pool default: ceil(n / (4 * workers)).
        n = 1_000_000
        cs = -(-n // (4 * workers))
        t = time.perf_counter()
        list(ex.map(trivial, range(n), chunksize=cs))
        t = time.perf_counter() - t
        print(f"mpi4py trivial/chunksize=default {n / t:.0f} tasks/s", flush=True)
        if not os.environ.get("MPI4PY_PRIMES"):
            return  # 256 sums in CPython take about a minute per core
        t = time.perf_counter()
        r = list(ex.map(crunch_primes, range(256), chunksize=1))
        t = time.perf_counter() - t
        assert all(s == PRIME_SUM for s in r)
        print(f"mpi4py primes256/chunksize=1 {t * 1e3:.0f} ms", flush=True)


if __name__ == "__main__":
    main()
