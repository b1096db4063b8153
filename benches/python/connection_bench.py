"""Python's multiprocessing.connection, measured as benches/benches/connection.rs
measures multiproc::connection; prints one JSON object.

  rt_us_<t>      8-byte round trip (send_bytes, recv_bytes), median of batches
  echo_gbps_<t>  1 MiB messages echoed: MiB sent per second (x 1.048576e-3 GB)
  hs_ms_<t>      Client(address, authkey) against a Listener (both rounds)

<t> is unix or tcp. The echo server is another process (fork), as in the
Rust bench. Usage: connection_bench.py [--quick]
"""

import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Client, Listener

KEY = b"multiproc connection bench key"


def address(kind):
    if kind == "unix":
        d = tempfile.mkdtemp(prefix="mpconnbench-")
        return os.path.join(d, "l.sock"), "AF_UNIX"
    return ("127.0.0.1", 0), "AF_INET"


def echo_server(lst, n_conns):
    for _ in range(n_conns):
        c = lst.accept()
        while True:
            try:
                m = c.recv_bytes()
            except EOFError:
                break
            c.send_bytes(m)
        c.close()


def accept_loop(lst, n):
    for _ in range(n):
        c = lst.accept()
        c.close()


def median_of_batches(fn, batches, per_batch):
    out = []
    for _ in range(batches):
        t0 = time.perf_counter()
        for _ in range(per_batch):
            fn()
        out.append((time.perf_counter() - t0) / per_batch)
    return statistics.median(out)


def bench(kind, quick):
    res = {}
    addr, family = address(kind)
    lst = Listener(addr, family=family, authkey=KEY)
    p = mp.get_context("fork").Process(target=echo_server, args=(lst, 1))
    p.start()
    c = Client(lst.address, family=family, authkey=KEY)
    small = b"x" * 8
    big = b"y" * (1 << 20)

    def rt():
        c.send_bytes(small)
        c.recv_bytes()

    def echo():
        c.send_bytes(big)
        c.recv_bytes()

    for _ in range(200):
        rt()
    res["rt_us_" + kind] = median_of_batches(rt, 5, 300 if quick else 2000) * 1e6
    for _ in range(5):
        echo()
    per = median_of_batches(echo, 5, 10 if quick else 50)
    res["echo_gbps_" + kind] = (1 << 20) / per / 1e9
    c.close()
    p.join()
    lst.close()
    if kind == "unix":
        os.rmdir(os.path.dirname(addr))

    n_hs = 5 * (20 if quick else 100)
    addr, family = address(kind)
    lst = Listener(addr, family=family, authkey=KEY)
    p = mp.get_context("fork").Process(target=accept_loop, args=(lst, n_hs + 5))
    p.start()

    def hs():
        Client(lst.address, family=family, authkey=KEY).close()

    for _ in range(5):
        hs()
    res["hs_ms_" + kind] = median_of_batches(hs, 5, n_hs // 5) * 1e3
    p.join()
    lst.close()
    if kind == "unix":
        os.rmdir(os.path.dirname(addr))
    return res


def main():
    quick = "--quick" in sys.argv
    out = {"python": sys.version.split()[0]}
    for kind in ("unix", "tcp"):
        out.update(bench(kind, quick))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
