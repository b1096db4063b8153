//! `multiproc::manager`: Rust proxies in several processes, the faults
//! (a client killed mid-call, a server killed mid-reply, malformed and
//! oversized requests, a wrong key), and an unmodified Python 3 client
//! (`tests/python/manager_peer.py`) against a Rust Manager.
//!
//! The Python test prints a reason and passes only if python3 is missing
//! (it is present where CI runs).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use multiproc::connection::{Address, Client, ConnectionError};
use multiproc::manager::pickle::{dumps, loads};
use multiproc::manager::{
    DictProxy, LockProxy, Manager, ManagerClient, ManagerError, ObjectKind, PyValue, QueueProxy,
    ShmQueueProxy,
};
use multiproc::Process;
use multiproc_tests::process_support::{run_tests, Test};
use multiproc_tests::Cells;

const WATCHDOG: Duration = Duration::from_secs(120);
const WAIT: Duration = Duration::from_secs(60);
const KEY: &[u8] = b"multiproc manager test key";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every kind of object through its proxy, and each `_timeout` variant.
fn rust_proxies_every_kind() {
    let m = Manager::start().unwrap();
    let c = m.client().unwrap();
    let q = c.queue().unwrap();
    q.put(b"one").unwrap();
    q.put_value(PyValue::Int(2)).unwrap();
    assert_eq!(q.qsize().unwrap(), 2);
    assert_eq!(q.get().unwrap(), b"one");
    assert!(matches!(q.get(), Err(ManagerError::NotBytes(_))));
    assert!(matches!(q.try_get(), Err(ManagerError::Empty)));
    assert!(matches!(
        q.get_timeout(Duration::from_millis(50)),
        Err(ManagerError::Empty)
    ));
    q.put_serde(&("serde", 7u32)).unwrap();
    assert_eq!(q.get_serde::<(String, u32)>().unwrap(), ("serde".into(), 7));

    let bq = c.queue_bounded(1).unwrap();
    bq.put(b"x").unwrap();
    assert!(matches!(
        bq.put_timeout(b"y", Duration::from_millis(50)),
        Err(ManagerError::Full)
    ));

    let d = c.dict().unwrap();
    d.set("a", 1i64).unwrap();
    d.set_timeout(b"b".as_slice(), "bee", WAIT).unwrap();
    d.set_serde("s", &vec![1u8, 2]).unwrap();
    assert_eq!(d.get("a").unwrap(), Some(PyValue::Int(1)));
    assert_eq!(d.get_timeout("zz", WAIT).unwrap(), None);
    assert_eq!(d.get_serde::<Vec<u8>>("s").unwrap(), Some(vec![1, 2]));
    assert_eq!(
        d.keys().unwrap(),
        vec!["a".into(), PyValue::Bytes(b"b".to_vec()), "s".into()]
    );
    assert_eq!(d.remove("a").unwrap(), Some(PyValue::Int(1)));
    assert_eq!(d.len().unwrap(), 2);
    let unhashable = d.set(PyValue::List(vec![]), 1i64);
    assert!(
        matches!(unhashable, Err(ManagerError::Remote { ref exception, .. }) if exception == "TypeError"),
        "{unhashable:?}"
    );

    let l = c.list().unwrap();
    l.append("x").unwrap();
    l.append(2i64).unwrap();
    l.set(-1, 3i64).unwrap();
    assert_eq!(l.to_vec().unwrap(), vec!["x".into(), PyValue::Int(3)]);
    assert_eq!(l.pop().unwrap(), PyValue::Int(3));
    assert!(matches!(l.get(5), Err(ManagerError::Remote { .. })));

    let v = c.value(1.5f64).unwrap();
    v.set("now a str").unwrap();
    assert_eq!(v.get().unwrap(), "now a str".into());

    let lk = c.lock().unwrap();
    lk.acquire().unwrap();
    let lk2 = LockProxy::connect(lk.token(), KEY_DEFAULT()).unwrap();
    assert!(!lk2.try_acquire().unwrap());
    assert!(!lk2.acquire_timeout(Duration::from_millis(50)).unwrap());
    lk.release().unwrap();
    assert!(lk2.acquire_timeout(WAIT).unwrap());
    assert!(
        matches!(lk.release(), Ok(())),
        "a Python Lock may be released by anyone"
    );

    let e = c.event().unwrap();
    assert!(!e.wait_timeout(Duration::from_millis(20)).unwrap());
    e.set().unwrap();
    assert!(e.is_set().unwrap() && e.wait_timeout(WAIT).unwrap());

    // A token of another kind.
    assert!(matches!(
        DictProxy::connect(q.token(), KEY_DEFAULT()),
        Err(ManagerError::WrongKind {
            expected: ObjectKind::Dict,
            found: ObjectKind::Queue
        })
    ));
    m.shutdown().unwrap();
}

#[allow(non_snake_case)]
fn KEY_DEFAULT() -> &'static [u8] {
    Box::leak(multiproc::connection::authkey().into_boxed_slice())
}

/// A client killed (SIGKILL) while it holds a lock and references, and
/// one killed while it waits in `get`: the server releases the lock and
/// the references, keeps the item the dead waiter would have taken, and
/// keeps serving the others.
fn killed_client_releases_what_it_held() {
    let m = Manager::start().unwrap();
    let c = m.client().unwrap();
    let base = c.number_of_objects().unwrap();
    let lock = c.lock().unwrap();
    let q = c.queue().unwrap();
    let cells = Cells::leaked();
    let (lt, qt, addr) = (lock.token().clone(), q.token().clone(), m.address().clone());
    let key = m.authkey().to_vec();
    let holder = Process::new(move || {
        let l = LockProxy::connect(&lt, &key).unwrap();
        l.acquire().unwrap();
        // References of its own: a dict, and the queue again.
        let c = ManagerClient::connect(&addr, &key).unwrap();
        let _d = c.dict().unwrap();
        let q = QueueProxy::connect(&qt, &key).unwrap();
        cells.get(0).store(1, std::sync::atomic::Ordering::SeqCst);
        // Waits in get (server side) until killed.
        let _ = q.get();
    })
    .start()
    .unwrap();
    cells.wait_for(0, 1);
    assert_eq!(c.number_of_objects().unwrap(), base + 3);
    assert!(!lock.try_acquire().unwrap(), "the child holds it");
    // Let the child's get reach the server, then kill it mid-call.
    std::thread::sleep(Duration::from_millis(200));
    holder.kill().unwrap();
    holder.join().unwrap();
    assert!(
        lock.acquire_timeout(WAIT).unwrap(),
        "the dead holder's lock is released"
    );
    q.put(b"for the living").unwrap();
    assert_eq!(q.get_timeout(WAIT).unwrap(), b"for the living");
    // Its dict is gone; the lock and the queue keep our references.
    let mut n = c.number_of_objects().unwrap();
    for _ in 0..200 {
        if n == base + 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        n = c.number_of_objects().unwrap();
    }
    assert_eq!(n, base + 2);
    drop((lock, q));
    let mut n = c.number_of_objects().unwrap();
    for _ in 0..200 {
        if n == base {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        n = c.number_of_objects().unwrap();
    }
    assert_eq!(n, base, "dropped proxies release their objects");
}

/// The server killed while a proxy waits for its reply: a typed error,
/// no hang, on that call and every later one.
fn server_killed_mid_call_is_an_error() {
    let m = Manager::start().unwrap();
    let c = m.client().unwrap();
    let q = c.queue().unwrap();
    let pid = m.process().unwrap().pid();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: signalling our own child, which has not been reaped.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    });
    let r = q.get();
    assert!(matches!(r, Err(ManagerError::Disconnected)), "{r:?}");
    killer.join().unwrap();
    let r = q.put(b"x");
    assert!(r.is_err(), "{r:?}");
    assert!(c.dict().is_err());
    drop(m);
}

/// Garbage, an unknown object or method, a disallowed global: a
/// `#TRACEBACK` reply and the connection goes on; an oversized request:
/// a reply and that connection closes; a wrong key: refused. The server
/// serves its other clients throughout.
fn malformed_oversized_and_wrong_key() {
    let m = Manager::builder()
        .authkey(KEY)
        .max_message(4096)
        .start()
        .unwrap();
    let c = m.client().unwrap();
    let d = c.dict().unwrap();
    d.set("k", "v").unwrap();
    // A second reference: `d`'s own connection is closed below.
    let d2 = DictProxy::connect(d.token(), KEY).unwrap();

    let mut raw = Client::connect(m.address(), KEY).unwrap();
    let accept = PyValue::Tuple(vec![
        PyValue::None,
        "accept_connection".into(),
        PyValue::Tuple(vec!["raw".into()]),
        PyValue::Dict(vec![]),
    ]);
    raw.send_bytes(&dumps(&accept).unwrap()).unwrap();
    assert_eq!(kind(&raw.recv_bytes(1 << 20).unwrap()), "#RETURN");
    for bad in [
        b"not a pickle".to_vec(),
        b"\x80\x04\x95".to_vec(),
        b"cos\nsystem\n(S'true'\ntR.".to_vec(),
        dumps(&PyValue::Tuple(vec![
            "nope".into(),
            "get".into(),
            PyValue::Tuple(vec![]),
            PyValue::Dict(vec![]),
        ]))
        .unwrap(),
        dumps(&PyValue::Tuple(vec![
            d.token().id.clone().into(),
            "__class__".into(),
            PyValue::Tuple(vec![]),
            PyValue::Dict(vec![]),
        ]))
        .unwrap(),
    ] {
        raw.send_bytes(&bad).unwrap();
        assert_eq!(kind(&raw.recv_bytes(1 << 20).unwrap()), "#TRACEBACK");
    }
    let get = PyValue::Tuple(vec![
        d.token().id.clone().into(),
        "__getitem__".into(),
        PyValue::Tuple(vec!["k".into()]),
        PyValue::Dict(vec![]),
    ]);
    raw.send_bytes(&dumps(&get).unwrap()).unwrap();
    let back = loads(&raw.recv_bytes(1 << 20).unwrap()).unwrap();
    assert_eq!(back, PyValue::Tuple(vec!["#RETURN".into(), "v".into()]));

    // Oversized: the server says why and closes that connection only.
    raw.send_bytes(&vec![0u8; 10_000]).unwrap();
    assert_eq!(kind(&raw.recv_bytes(1 << 20).unwrap()), "#TRACEBACK");
    assert!(matches!(
        raw.recv_bytes(1 << 20),
        Err(ConnectionError::Closed)
    ));
    // A proxy whose request is over the server's limit is told so (or
    // finds the connection closed while it still writes), and its
    // connection (with its reference) is closed.
    let big = d.set("big", vec![0u8; 1 << 20]);
    assert!(
        matches!(
            big,
            Err(ManagerError::Remote { .. } | ManagerError::Disconnected)
        ),
        "{big:?}"
    );
    assert!(matches!(
        d.len(),
        Err(ManagerError::Disconnected | ManagerError::Broken)
    ));
    let small = c.clone().max_message(1024).dict().unwrap();
    let big = small.set("big", vec![0u8; 2048]);
    assert!(matches!(big, Err(ManagerError::TooLarge { .. })), "{big:?}");

    let wrong = ManagerClient::connect(m.address(), b"wrong key");
    assert!(
        matches!(
            wrong,
            Err(ManagerError::Connection(ConnectionError::AuthFailed))
        ),
        "{wrong:?}"
    );
    // The others are still served.
    let c2 = m.client().unwrap();
    assert_eq!(d2.get("k").unwrap(), Some("v".into()));
    assert!(c2.queue().is_ok());
}

fn kind(reply: &[u8]) -> String {
    match loads(reply).unwrap() {
        PyValue::Tuple(t) => t[0].as_str().unwrap().to_owned(),
        v => panic!("reply {v:?}"),
    }
}

/// Over TCP (loopback) as well as the default Unix socket.
fn tcp_manager() {
    let m = Manager::builder()
        .address(Address::loopback())
        .start()
        .unwrap();
    let Address::Tcp(a) = m.address() else {
        panic!("not tcp")
    };
    assert!(a.ip().is_loopback());
    let q = m.client().unwrap().queue().unwrap();
    q.put(b"tcp").unwrap();
    assert_eq!(q.get().unwrap(), b"tcp");
}

/// An unmodified Python client: BaseManager with registered typeids the
/// Rust server shares, SyncManager's Queue/dict/Lock/Event, get_methods
/// with a Token, refcounts, and a refused global.
fn python_client_queue_and_dict() {
    for at in [Address::unique_unix(), Address::loopback()] {
        let m = Manager::builder()
            .address(at)
            .authkey(KEY)
            .share("get_queue", ObjectKind::Queue)
            .share("get_dict", ObjectKind::Dict)
            .start()
            .unwrap();
        let c = m.client().unwrap();
        let q = c.shared_queue("get_queue").unwrap();
        let d = c.shared_dict("get_dict").unwrap();
        q.put(b"first").unwrap();
        q.put(b"from rust").unwrap();
        d.set("rust", b"set by rust".as_slice()).unwrap();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/manager_peer.py");
        let mut child = match Command::new("python3")
            .arg(script)
            .arg(m.address().to_string())
            .arg(hex(KEY))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                println!("skipped: python3 could not be run ({e})");
                return;
            }
        };
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let line = || lines.recv_timeout(WAIT).expect("python3 failed or hung");
        assert_eq!(line(), "rust put: b'first'");
        assert_eq!(line(), "python put done");
        assert_eq!(line(), "ok");
        assert!(child.wait().unwrap().success());
        assert_eq!(q.get_timeout(WAIT).unwrap(), b"from python");
        let t = q.get_value_timeout(WAIT).unwrap();
        assert_eq!(
            t,
            PyValue::Tuple(vec![
                "a".into(),
                PyValue::Int(1),
                PyValue::Float(2.5),
                PyValue::None,
                PyValue::Bool(true),
                PyValue::List(vec![PyValue::Bytes(b"x".to_vec())]),
                PyValue::Dict(vec![("k".into(), "v".into())]),
            ])
        );
        assert_eq!(d.get("py").unwrap(), Some("thon".into()));
        assert_eq!(
            d.get(3i64).unwrap(),
            Some(PyValue::Bytes(b"three".to_vec()))
        );
    }
}

/// A shared-memory queue: proxies on this machine go through the shared
/// memory (a forked child too, from the token), a proxy forced through the
/// server reaches the same queue, and one killed in the middle of its
/// puts leaves it usable.
fn shm_queue_local_and_through_server() {
    let m = Manager::start().unwrap();
    let c = m.client().unwrap();
    let q = c.shm_queue(64, 256).unwrap();
    assert!(q.is_local());
    q.put(b"local").unwrap();
    assert_eq!(q.qsize().unwrap(), 1);
    let remote = ShmQueueProxy::connect(q.token(), &multiproc::connection::authkey())
        .unwrap()
        .via_server();
    assert!(!remote.is_local());
    assert_eq!(remote.get().unwrap(), b"local");
    remote.put(b"from the server side").unwrap();
    assert_eq!(q.get().unwrap(), b"from the server side");
    assert!(matches!(
        remote.get_timeout(Duration::from_millis(20)),
        Err(ManagerError::Empty)
    ));
    assert!(matches!(
        q.put(&[0u8; 300]),
        Err(ManagerError::TooLarge { len: 300, .. })
    ));
    remote.put_serde(&("serde", 3u8)).unwrap();
    assert_eq!(q.get_serde::<(String, u8)>().unwrap(), ("serde".into(), 3));

    let token = q.token().clone();
    let child = Process::new(move || {
        let key = multiproc::connection::authkey();
        let q = ShmQueueProxy::connect(&token, &key).unwrap();
        assert!(q.is_local());
        for i in 0..1000u32 {
            q.put(&i.to_le_bytes()).unwrap();
        }
    })
    .start()
    .unwrap();
    let mut sum = 0u64;
    for _ in 0..1000 {
        let b = q.get_timeout(WATCHDOG).unwrap();
        sum += u64::from(u32::from_le_bytes(b[..4].try_into().unwrap()));
    }
    assert_eq!(sum, 999 * 1000 / 2);
    child.join().unwrap();

    // A child killed in the middle of its puts: the queue goes on.
    let token = q.token().clone();
    let child = Process::new(move || {
        let key = multiproc::connection::authkey();
        let q = ShmQueueProxy::connect(&token, &key).unwrap();
        // Until it is killed (the queue is never disconnected here).
        while !matches!(
            q.put_timeout(b"spam", Duration::from_millis(1)),
            Err(ManagerError::Disconnected)
        ) {}
    })
    .start()
    .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    child.kill().unwrap();
    let _ = child.join();
    while q.get_timeout(Duration::from_millis(20)).is_ok() {}
    q.put(b"after").unwrap();
    assert_eq!(remote.get().unwrap(), b"after");
}

fn main() {
    multiproc::init();
    macro_rules! tests {
        ($($t:ident),* $(,)?) => { &[$(Test { name: stringify!($t), run: $t }),*] };
    }
    run_tests(
        tests![
            rust_proxies_every_kind,
            killed_client_releases_what_it_held,
            server_killed_mid_call_is_an_error,
            malformed_oversized_and_wrong_key,
            tcp_manager,
            python_client_queue_and_dict,
            shm_queue_local_and_through_server,
        ],
        WATCHDOG,
    );
}
