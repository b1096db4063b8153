"""The Python side of tests/tests/connection.rs.

  conn_peer.py listen unix|tcp KEYHEX
      multiprocessing.connection.Listener; prints its address (a path, or
      host:port), accepts one client, echoes every message until EOF.
      Prints "authfail" if the client's key is wrong.
  conn_peer.py client ADDRESS KEYHEX SIZE...
      multiprocessing.connection.Client; sends a pattern of each SIZE,
      checks the echo. Prints "ok", or "authfail" on AuthenticationError.
  conn_peer.py py312 listen|client ADDRESS-or-unix|tcp KEYHEX
      Plays a Python 3.12 peer on a raw socket, with the hmac module: the
      {sha256} challenge, the {sha256} answer; then echoes (listen) or sends
      one message and checks the echo (client). Prints "ok".

ADDRESS: a path (Unix) or host:port (TCP).
"""

import hmac
import os
import socket
import struct
import sys
from multiprocessing.connection import AuthenticationError, Client, Listener


def pattern(n):
    return (bytes(range(256)) * (n // 256 + 1))[:n]


def parse_address(a):
    if ":" in a and not a.startswith("/"):
        host, port = a.rsplit(":", 1)
        return (host, int(port))
    return a


def say(s):
    print(s, flush=True)


def listen(family, key):
    if family == "unix":
        lst = Listener(family="AF_UNIX", authkey=key)
        say(lst.address)
    else:
        lst = Listener(("127.0.0.1", 0), authkey=key)
        say("%s:%d" % lst.address)
    try:
        conn = lst.accept()
    except AuthenticationError:
        say("authfail")
        return
    while True:
        try:
            msg = conn.recv_bytes()
        except EOFError:
            break
        conn.send_bytes(msg)
    say("done")


def client(address, key, sizes):
    try:
        conn = Client(parse_address(address), authkey=key)
    except AuthenticationError:
        say("authfail")
        return
    for n in sizes:
        msg = pattern(n)
        conn.send_bytes(msg)
        back = conn.recv_bytes()
        assert back == msg, "echo of %d bytes differs (%d back)" % (n, len(back))
    conn.close()
    say("ok")


# --- a Python 3.12 peer, by hand -------------------------------------------

def send_frame(s, payload):
    s.sendall(struct.pack("!i", len(payload)) + payload)


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError
        b += c
    return b


def recv_frame(s, maxlen=None):
    (n,) = struct.unpack("!i", recv_exact(s, 4))
    assert n >= 0
    if maxlen is not None:
        assert n <= maxlen, n
    return recv_exact(s, n)


def deliver_312(s, key):
    message = b"{sha256}" + os.urandom(40)
    send_frame(s, b"#CHALLENGE#" + message)
    response = recv_frame(s, 256)
    assert response.startswith(b"{sha256}"), response
    expected = hmac.new(key, message, "sha256").digest()
    if hmac.compare_digest(response[8:], expected):
        send_frame(s, b"#WELCOME#")
    else:
        send_frame(s, b"#FAILURE#")
        raise AssertionError("wrong answer from rust")


def answer_312(s, key):
    msg = recv_frame(s, 256)
    assert msg.startswith(b"#CHALLENGE#"), msg
    message = msg[len(b"#CHALLENGE#"):]
    if len(message) in (20, 16):
        # A legacy challenge: bare HMAC-MD5.
        send_frame(s, hmac.new(key, message, "md5").digest())
    else:
        assert message.startswith(b"{sha256}"), message
        send_frame(s, b"{sha256}" + hmac.new(key, message, "sha256").digest())
    verdict = recv_frame(s, 256)
    assert verdict == b"#WELCOME#", verdict


def py312(role, where, key):
    if role == "listen":
        if where == "unix":
            path = os.path.join("/tmp", "conn-peer-%d-%s.sock" % (os.getpid(), os.urandom(4).hex()))
            lst = socket.socket(socket.AF_UNIX)
            lst.bind(path)
            lst.listen(1)
            say(path)
        else:
            lst = socket.socket(socket.AF_INET)
            lst.bind(("127.0.0.1", 0))
            lst.listen(1)
            say("127.0.0.1:%d" % lst.getsockname()[1])
        s, _ = lst.accept()
        lst.close()
        if where == "unix":
            os.unlink(path)
        deliver_312(s, key)
        answer_312(s, key)
        while True:
            try:
                m = recv_frame(s)
            except EOFError:
                break
            send_frame(s, m)
        say("ok")
    else:
        a = parse_address(where)
        s = socket.socket(socket.AF_UNIX if isinstance(a, str) else socket.AF_INET)
        s.connect(a)
        answer_312(s, key)
        deliver_312(s, key)
        msg = pattern(1000)
        send_frame(s, msg)
        assert recv_frame(s) == msg
        s.close()
        say("ok")


def main():
    args = sys.argv[1:]
    if args[0] == "listen":
        listen(args[1], bytes.fromhex(args[2]))
    elif args[0] == "client":
        client(args[1], bytes.fromhex(args[2]), [int(n) for n in args[3:]])
    elif args[0] == "py312":
        py312(args[1], args[2], bytes.fromhex(args[3]))
    else:
        raise SystemExit("unknown mode %r" % args[0])


if __name__ == "__main__":
    main()
