#!/usr/bin/env python3
"""CPU time of every process (and busy thread) a command starts.

Runs the command, samples /proc/<pid>/task/<tid>/stat of all its
descendants every 50 ms, and prints to stderr each one's user and system
seconds at its last sample (a process that lives less than 50 ms is
missed). Used to see which process of an MPI job takes the cores, e.g.:

    benches/mpi/cpu.py mpirun --allow-run-as-root --bind-to none -np 2 \\
        --mca btl self,vader target/release/mpi_pool pool primes 2
"""
import os
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def stat(path):
    s = open(path).read()
    r = s.rfind(")")
    f = s[r + 2 :].split()
    return s[s.find("(") + 1 : r], int(f[1]), int(f[11]), int(f[12])


def main():
    p = subprocess.Popen(sys.argv[1:])
    seen = {}
    t0 = time.time()
    while p.poll() is None:
        procs = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    procs[int(d)] = stat(f"/proc/{d}/stat")
                except OSError:
                    pass
        tree, grew = {p.pid}, True
        while grew:
            grew = False
            for pid, (_, ppid, _, _) in procs.items():
                if ppid in tree and pid not in tree:
                    tree.add(pid)
                    grew = True
        for pid in tree:
            try:
                for t in os.listdir(f"/proc/{pid}/task"):
                    c, _, u, s = stat(f"/proc/{pid}/task/{t}/stat")
                    seen[(pid, int(t))] = (procs[pid][0], procs[pid][1], c, u, s)
            except (OSError, KeyError):
                pass
        time.sleep(0.05)
    print(f"# wall {time.time() - t0:.2f}s exit {p.returncode}", file=sys.stderr)
    total = {}
    for (pid, tid), (pc, ppid, c, u, s) in sorted(seen.items()):
        t = total.setdefault(pid, [pc, ppid, 0, 0])
        t[2] += u
        t[3] += s
        if u + s > 2:
            print(f"#   pid {pid} thread {tid} {c}: user {u / TICK:.2f}s sys {s / TICK:.2f}s",
                  file=sys.stderr)
    for pid, (pc, ppid, u, s) in sorted(total.items()):
        if u + s > 0:
            print(f"# pid {pid} (parent {ppid}) {pc}: user {u / TICK:.2f}s sys {s / TICK:.2f}s",
                  file=sys.stderr)
    sys.exit(p.returncode)


if __name__ == "__main__":
    main()
