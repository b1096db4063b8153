"""Python's multiprocessing Manager, measured as benches/benches/manager.rs
measures multiproc::manager; prints one JSON object.

  queue_us  q.put(8 bytes) then q.get() on a Queue proxy, median of batches
  dict_us   d['k'] = 8 bytes then d['k'] on a dict proxy, median of batches

The server is SyncManager's own process (fork), over its default Unix
socket. Usage: manager_bench.py [--quick]
"""

import json
import statistics
import sys
import time
from multiprocessing.managers import SyncManager


def median_us(f, n, batches=5):
    f(n // 10)
    out = []
    for _ in range(batches):
        t = time.perf_counter()
        f(n)
        out.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(out)


def main():
    n = 500 if "--quick" in sys.argv else 5000
    m = SyncManager()
    m.start()
    q = m.Queue()
    d = m.dict()
    msg = b"12345678"

    def qloop(k):
        for _ in range(k):
            q.put(msg)
            q.get()

    def dloop(k):
        for _ in range(k):
            d["k"] = msg
            d["k"]

    r = {"queue_us": median_us(qloop, n), "dict_us": median_us(dloop, n)}
    m.shutdown()
    print(json.dumps(r))


main()
