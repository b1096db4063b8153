#!/usr/bin/env python3
"""Python's multiprocessing.Pool, measured as benches/benches/pool.rs measures
multiproc's Pool (issue 14's "Benchmarks"); prints one JSON object.

  map_cs1_tasks_per_s          Pool.map of a trivial function, chunksize=1
  map_default_tasks_per_s      the same with Python's default chunking
  imap_unordered_cs64_tasks_per_s  imap_unordered, chunksize=64, consumed
  apply_round_trip_us          Pool.apply of one trivial task
  map_primes_s                 Pool.map of PEP 371's sum of primes below
                               100000 (primes.crunch_primes), once per item

All with 2 workers (--workers N to change), the fork start method, one pool
made before anything is timed. Each figure is the median of several runs
(5; 3 for the two slow ones). The trivial maps run over TRIVIAL items, the
primes map over PRIMES items; both counts are in the output.

Usage: pool_bench.py [--quick] [--workers N]
  --quick: fewer items and one run each (for the pep371 main job's --quick).

pep371.py imports `measure` from here for the main job's Pool rows.
"""

import json
import multiprocessing as mp
import statistics
import sys
import time

from primes import crunch_primes

TRIVIAL = 100_000
PRIMES = 32


def inc(x):
    return x + 1


def prime_sum(_):
    return crunch_primes(100000)


def median_of(runs, fn, check=None):
    """Median wall time of `runs` calls of `fn`; `check` looks at each
    result after the clock stopped."""
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        r = fn()
        out.append(time.perf_counter() - t)
        if check is not None:
            check(r)
    return statistics.median(out)


def measure(workers=2, quick=False, progress=None):
    """The figures as a dict; `progress(label)` is called before each."""
    trivial = TRIVIAL // 10 if quick else TRIVIAL
    primes = 4 if quick else PRIMES
    many, few = (1, 1) if quick else (5, 3)
    step = progress or (lambda _label: None)
    items = list(range(trivial))
    want = sum(items) + trivial
    out = {"workers": workers, "trivial_items": trivial, "primes_items": primes}
    with mp.get_context("fork").Pool(workers) as pool:
        pool.map(inc, range(1000))  # the workers are up and warm

        def check(r):
            assert len(r) == trivial and sum(r) == want

        step("pool map chunksize 1")
        t = median_of(few, lambda: pool.map(inc, items, 1), check)
        out["map_cs1_tasks_per_s"] = trivial / t
        step("pool map default chunking")
        t = median_of(many, lambda: pool.map(inc, items), check)
        out["map_default_tasks_per_s"] = trivial / t

        # Consumed as it comes (into a list, as the Rust side collects).
        step("pool imap_unordered chunksize 64")
        t = median_of(many, lambda: list(pool.imap_unordered(inc, items, 64)), check)
        out["imap_unordered_cs64_tasks_per_s"] = trivial / t

        step("pool apply round trip")
        n = 200 if quick else 2000
        for _ in range(50):
            pool.apply(inc, (1,))

        def applies():
            for i in range(n):
                pool.apply(inc, (i,))

        out["apply_round_trip_us"] = median_of(many, applies) / n * 1e6

        step("pool map primes")

        def primes_check(r):
            assert r == [454396537] * primes

        out["map_primes_s"] = median_of(
            few, lambda: pool.map(prime_sum, range(primes)), primes_check)
    return out


def main():
    quick = "--quick" in sys.argv
    workers = 2
    if "--workers" in sys.argv:
        workers = int(sys.argv[sys.argv.index("--workers") + 1])
    out = {"python": sys.version.split()[0]}
    out.update(measure(workers, quick,
                       lambda s: print("python: " + s, file=sys.stderr)))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
