"""Python side of tests/tests/python_shm.rs: multiprocessing.shared_memory
segments shared with Rust's multiproc::shm::SharedMemory.

  shm_peer.py create SIZE      Python creates a segment, fills it with
                               pattern(i) = (7*i + 3) % 256, prints its name,
                               waits for "done" on stdin, checks that Rust
                               wrote 255 - pattern(i) back, prints "ok",
                               unlinks the segment.
  shm_peer.py attach NAME SIZE Python attaches to a segment Rust created
                               (filled with pattern(i)), checks it, writes
                               255 - pattern(i) back, prints "ok". It
                               unregisters the segment from the resource
                               tracker, which would otherwise unlink it at
                               exit (Python 3.11 registers attached segments
                               too).
Exit code 0 on success; on a mismatch, a message on stderr and code 1.
"""
import sys
from multiprocessing import resource_tracker, shared_memory


def pattern(size):
    return bytes((7 * i + 3) % 256 for i in range(size))


def answer(size):
    return bytes(255 - b for b in pattern(size))


def fail(msg):
    print(f"shm_peer.py: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def create(size):
    shm = shared_memory.SharedMemory(create=True, size=size)
    try:
        shm.buf[:size] = pattern(size)
        print(shm.name, flush=True)
        line = sys.stdin.readline().strip()
        if line != "done":
            fail(f"expected 'done' from Rust, got {line!r}")
        got = bytes(shm.buf[:size])
        if got != answer(size):
            first = next(i for i in range(size) if got[i] != answer(size)[i])
            fail(f"Rust's answer differs at byte {first}")
        print("ok", flush=True)
    finally:
        shm.close()
        shm.unlink()


def attach(name, size):
    shm = shared_memory.SharedMemory(name=name)
    # Attaching registers the segment with the resource tracker in 3.11,
    # which would unlink Rust's segment when this process exits.
    resource_tracker.unregister(shm._name, "shared_memory")
    try:
        if shm.size < size:
            fail(f"segment has {shm.size} bytes, expected {size}")
        if bytes(shm.buf[:size]) != pattern(size):
            fail("Rust's pattern not found")
        shm.buf[:size] = answer(size)
        print("ok", flush=True)
    finally:
        shm.close()


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "create":
        create(int(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "attach":
        attach(sys.argv[2], int(sys.argv[3]))
    else:
        fail(f"usage: {sys.argv[0]} create SIZE | attach NAME SIZE")


if __name__ == "__main__":
    main()
