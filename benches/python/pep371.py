#!/usr/bin/env python3
"""PEP 371's performance comparison, and IPC figures, for Python's own
multiprocessing: the peer that multiproc's main job (`pep371` binary) is
compared against in the same run.

Usage: pep371.py [--quick] [--workers 1,2,4,8] [--only table|ipc|pool]

Prints one JSON object on stdout:
  {"python": "3.11.7",
   "table": [{"workload": "fibonacci", "mode": "processes", "workers": 4,
              "seconds": 0.0123}, ...],
   "ipc": {"queue_8B_msgs_per_s": ..., ...},
   "pool": {"map_cs1_tasks_per_s": ..., ...}}
The "pool" object is pool_bench.measure's (multiprocessing.Pool, 2 workers).
Progress goes to stderr.
"""

import argparse
import http.server
import json
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.request

import pool_bench
from primes import crunch_primes

# --- the PEP 371 workloads -------------------------------------------------


def empty_func():
    pass


def fibonacci(steps=50000):
    a, b = 0, 1
    for _ in range(steps):
        a, b = b, (a + b) % (1 << 64)
    return a


FILE_LINES = 10000


def make_file(path):
    with open(path, "w") as f:
        for i in range(FILE_LINES):
            f.write("line %08d %s\n" % (i, "x" * 60))


def file_io(path, seeks=1000):
    rng = random.Random(os.getpid())
    size = os.path.getsize(path)
    with open(path, "rb") as f, open(os.devnull, "wb") as out:
        for _ in range(seeks):
            f.seek(rng.randrange(size))
            f.readline()
            out.write(f.readline())


def url_get(url, fetches=100):
    for _ in range(fetches):
        with urllib.request.urlopen(url) as r:
            r.read()


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        body = b"multiproc pep371\n" * 64
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def start_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    return srv, "http://127.0.0.1:%d/" % srv.server_address[1]


def run_serial(fn, args, n):
    for _ in range(n):
        fn(*args)


def run_threads(fn, args, n):
    ts = [threading.Thread(target=fn, args=args) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def run_processes(fn, args, n):
    ps = [mp.Process(target=fn, args=args) for _ in range(n)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
        assert p.exitcode == 0


def best_of(k, f):
    best = float("inf")
    for _ in range(k):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def table(quick, workers):
    tmp = tempfile.NamedTemporaryFile(prefix="pep371-", delete=False)
    tmp.close()
    make_file(tmp.name)
    srv, url = start_server()
    loads = [
        ("empty_func", empty_func, ()),
        ("fibonacci", fibonacci, ()),
        ("crunch_primes", crunch_primes, ()),
        ("file_io", file_io, (tmp.name,)),
        ("url_get", url_get, (url,)),
    ]
    modes = [("serial", run_serial), ("threads", run_threads),
             ("processes", run_processes)]
    k = 1 if quick else 3
    rows = []
    try:
        for name, fn, args in loads:
            for n in workers:
                for mode, runner in modes:
                    print("python: %s %s x%d" % (name, mode, n), file=sys.stderr)
                    s = best_of(k, lambda: runner(fn, args, n))
                    rows.append({"workload": name, "mode": mode,
                                 "workers": n, "seconds": s})
    finally:
        srv.shutdown()
        os.unlink(tmp.name)
    return rows


# --- IPC figures -------------------------------------------------------------


def _q_consumer(q, n):
    for _ in range(n):
        q.get()


def queue_throughput(size, n):
    q = mp.Queue(maxsize=1024)
    msg = b"x" * size
    p = mp.Process(target=_q_consumer, args=(q, n))
    p.start()
    t = time.perf_counter()
    for _ in range(n):
        q.put(msg)
    p.join()
    return n / (time.perf_counter() - t)


def _pipe_consumer(conn, n):
    for _ in range(n):
        conn.recv_bytes()


def pipe_throughput(size, n):
    a, b = mp.Pipe(duplex=False)
    msg = b"x" * size
    p = mp.Process(target=_pipe_consumer, args=(a, n))
    p.start()
    t = time.perf_counter()
    for _ in range(n):
        b.send_bytes(msg)
    p.join()
    return n / (time.perf_counter() - t)


def _echo(qin, qout):
    while True:
        v = qin.get()
        if v is None:
            return
        qout.put(v)


def round_trip(n):
    qin, qout = mp.Queue(), mp.Queue()
    p = mp.Process(target=_echo, args=(qin, qout))
    p.start()
    for i in range(100):  # warm up
        qin.put(i)
        qout.get()
    samples = []
    for i in range(n):
        t = time.perf_counter()
        qin.put(i)
        qout.get()
        samples.append(time.perf_counter() - t)
    qin.put(None)
    p.join()
    samples.sort()
    return samples[len(samples) // 2], samples[len(samples) * 99 // 100]


def _true():
    pass


def start_join(method, n):
    ctx = mp.get_context(method)
    ctx.Process(target=_true).start()  # warm (starts the forkserver)
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        p = ctx.Process(target=_true)
        p.start()
        p.join()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def bare_fork(n):
    """Median fork + os._exit(0) in the child + waitpid: the fork row's floor."""
    samples = []
    for _ in range(n + 1):
        t = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        samples.append(time.perf_counter() - t)
    return statistics.median(samples[1:])


def _incr(lock, val, n, go):
    go.wait()
    for _ in range(n):
        with lock:
            val.value += 1


def locked_counter(n):
    lock = mp.Lock()
    val = mp.Value("q", 0, lock=False)
    # Timed from the moment both children are running (as multiproc's
    # figure is), not from their start.
    go = mp.Barrier(3)
    ps = [mp.Process(target=_incr, args=(lock, val, n, go)) for _ in range(2)]
    for p in ps:
        p.start()
    go.wait()
    t = time.perf_counter()
    for p in ps:
        p.join()
    el = time.perf_counter() - t
    assert val.value == 2 * n
    return 2 * n / el


def ipc(quick):
    f = 10 if quick else 1
    out = {}
    for size, n in [(8, 200000), (64, 200000), (4096, 50000), (1 << 20, 500)]:
        print("python: queue %d B" % size, file=sys.stderr)
        out["queue_%s_msgs_per_s" % label(size)] = queue_throughput(size, max(n // f, 50))
    for size, n in [(8, 200000), (4096, 50000)]:
        print("python: pipe %d B" % size, file=sys.stderr)
        out["pipe_%s_msgs_per_s" % label(size)] = pipe_throughput(size, max(n // f, 50))
    print("python: round trip", file=sys.stderr)
    p50, p99 = round_trip(max(20000 // f, 200))
    out["round_trip_p50_us"] = p50 * 1e6
    out["round_trip_p99_us"] = p99 * 1e6
    for method in ("fork", "forkserver", "spawn"):
        print("python: start+join %s" % method, file=sys.stderr)
        n = {"fork": 200, "forkserver": 100, "spawn": 20}[method] // (2 if quick else 1)
        out["start_join_%s_us" % method] = start_join(method, n) * 1e6
        if method == "fork":
            print("python: bare fork+waitpid", file=sys.stderr)
            out["start_join_bare_fork_us"] = bare_fork(n) * 1e6
    print("python: locked counter", file=sys.stderr)
    out["locked_counter_incr_per_s"] = locked_counter(max(200000 // f, 1000))
    return out


def label(size):
    if size >= 1 << 20:
        return "%dMiB" % (size >> 20)
    if size >= 1024:
        return "%dKiB" % (size >> 10)
    return "%dB" % size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", default=None)
    ap.add_argument("--only", choices=["table", "ipc", "pool"], default=None)
    a = ap.parse_args()
    workers = [int(w) for w in a.workers.split(",")] if a.workers else (
        [1, 2] if a.quick else [1, 2, 4, 8])
    res = {"python": sys.version.split()[0]}
    if a.only in (None, "table"):
        res["table"] = table(a.quick, workers)
    if a.only in (None, "ipc"):
        res["ipc"] = ipc(a.quick)
    if a.only in (None, "pool"):
        res["pool"] = pool_bench.measure(
            2, a.quick, lambda s: print("python: " + s, file=sys.stderr))
    json.dump(res, sys.stdout)
    print()


if __name__ == "__main__":
    mp.set_start_method("fork")
    main()
