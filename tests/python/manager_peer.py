"""Python side of tests/tests/manager.rs: an unmodified
multiprocessing.managers client against a Rust Manager.

Usage: manager_peer.py ADDRESS KEYHEX
ADDRESS is a Unix socket path or host:port. Prints 'ok' at the end; any
failure raises (non-zero exit).
"""
import pickle
import queue
import sys
from multiprocessing.managers import BaseManager, SyncManager, Token, dispatch
from multiprocessing.connection import Client


def parse(addr):
    if addr.startswith('/'):
        return addr
    host, port = addr.rsplit(':', 1)
    return (host, int(port))


class M(BaseManager):
    pass


M.register('get_queue')
M.register('get_dict')


def main():
    address, key = parse(sys.argv[1]), bytes.fromhex(sys.argv[2])

    # Registered (shared) objects, through AutoProxy.
    m = M(address=address, authkey=key)
    m.connect()
    q = m.get_queue()
    print('rust put:', q.get(timeout=30), flush=True)
    assert q.get(timeout=30) == b'from rust'
    try:
        q.get(timeout=0.1)
        raise AssertionError('get of an empty queue returned')
    except queue.Empty:
        pass
    q.put(b'from python')
    q.put(('a', 1, 2.5, None, True, [b'x'], {'k': 'v'}))
    d = m.get_dict()
    d['py'] = 'thon'
    d[3] = b'three'
    assert d['rust'] == b'set by rust', d['rust']
    assert d.get('absent') is None
    assert d.get('absent', 7) == 7
    assert sorted(map(repr, d.keys())) == sorted(map(repr, ['rust', 'py', 3])), d.keys()
    try:
        d['missing']
        raise AssertionError('missing key returned')
    except KeyError as e:
        assert e.args == ('missing',), e.args

    # SyncManager's own typeids: new objects, with their refcounts.
    s = SyncManager(address=address, authkey=key)
    s.connect()
    before = s._number_of_objects()
    sq = s.Queue()
    sd = s.dict()
    sd['x'] = 1
    sq.put(b'y')
    assert sq.get() == b'y' and sq.qsize() == 0
    assert sd['x'] == 1 and len(sd) == 1 and 'x' in sd
    assert s._number_of_objects() == before + 2
    lock = s.Lock()
    assert lock.acquire(timeout=1)
    lock.release()
    ev = s.Event()
    assert not ev.wait(0.05)
    ev.set()
    assert ev.wait(1)

    # get_methods with a pickled Token.
    conn = Client(address, authkey=key)
    exposed = dispatch(conn, None, 'get_methods', (sd._token,))
    assert 'keys' in exposed and '__getitem__' in exposed, exposed
    conn.close()

    del sq, sd, lock, ev
    import gc
    gc.collect()
    assert s._number_of_objects() == before, (s._number_of_objects(), before)

    # A global off the allow-list is refused, and the server goes on.
    conn = Client(address, authkey=key)
    conn.send_bytes(pickle.dumps((None, 'create', ('Queue', print), {})))
    kind, result = conn.recv()
    assert kind == '#TRACEBACK' and 'not allowed' in result, (kind, result)
    conn.close()

    print('python put done', flush=True)
    print('ok', flush=True)


main()
