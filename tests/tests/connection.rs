//! `multiproc::connection`: Python interop for real (the machine's python3,
//! `tests/python/conn_peer.py`), both handshake generations, and the
//! security properties (wrong keys, stalled clients, lying frames, socket
//! file mode, loopback binding).
//!
//! The Python tests print a reason and pass only if python3 is missing
//! (it is present where CI runs).

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use multiproc::connection::{
    authkey, set_authkey, Address, Challenge, Client, ConnectionError, HandshakeOptions, Listener,
    SocketConnection,
};
use multiproc_tests::process_support::{run_tests, Test};

const WATCHDOG: Duration = Duration::from_secs(120);
const LINE_WAIT: Duration = Duration::from_secs(60);
const SIZES: [usize; 3] = [0, 1024, 16 << 20];
const KEY: &[u8] = b"multiproc connection test key";

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 256) as u8).collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/conn_peer.py")
}

/// A python3 child, killed if the test fails first.
struct Py {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Py {
    /// `python3 conn_peer.py args..`; `None` (with the reason printed) if
    /// there is no python3.
    fn start(args: &[&str]) -> Option<Self> {
        let mut child = match Command::new("python3")
            .arg(script())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                println!("skipped: python3 could not be run ({e})");
                return None;
            }
        };
        let out = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Some(Self { child, lines })
    }

    fn line(&mut self) -> String {
        match self.lines.recv_timeout(LINE_WAIT) {
            Ok(l) => l,
            Err(e) => panic!("no line from python3 ({e}): it failed or hung"),
        }
    }

    fn finish(mut self) {
        let s = self.child.wait().unwrap();
        assert!(s.success(), "python3 ended with {s}");
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn parse_address(s: &str) -> Address {
    if s.starts_with('/') {
        Address::Unix(s.into())
    } else {
        Address::Tcp(s.parse().unwrap())
    }
}

fn family(a: &Address) -> &'static str {
    match a {
        Address::Unix(_) => "unix",
        Address::Tcp(_) => "tcp",
    }
}

/// Echoes messages until the peer closes.
fn echo(c: &mut SocketConnection) {
    loop {
        match c.recv_bytes(64 << 20) {
            Ok(m) => c.send_bytes(&m).unwrap(),
            Err(ConnectionError::Closed) => return,
            Err(e) => panic!("echo: {e}"),
        }
    }
}

fn python_client_to_rust_listener(at: Address) {
    let l = Listener::bind(&at, KEY).unwrap();
    let sizes: Vec<String> = SIZES.iter().map(|n| n.to_string()).collect();
    let mut args = vec!["client".to_owned(), l.address().to_string(), hex(KEY)];
    args.extend(sizes);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let Some(mut py) = Py::start(&args) else {
        return;
    };
    let mut c = l.accept_timeout(LINE_WAIT).unwrap();
    echo(&mut c);
    assert_eq!(py.line(), "ok");
    py.finish();
}

fn rust_client_to_python_listener(fam: &str) {
    let Some(mut py) = Py::start(&["listen", fam, &hex(KEY)]) else {
        return;
    };
    let at = parse_address(&py.line());
    assert_eq!(family(&at), fam);
    let mut c = Client::connect(&at, KEY).unwrap();
    for n in SIZES {
        let msg = pattern(n);
        c.send_bytes(&msg).unwrap();
        let back = c.recv_bytes(n).unwrap();
        assert!(back == msg, "echo of {n} bytes differs");
    }
    drop(c);
    assert_eq!(py.line(), "done");
    py.finish();
}

fn python_client_unix() {
    python_client_to_rust_listener(Address::unique_unix());
}

fn python_client_tcp() {
    python_client_to_rust_listener(Address::loopback());
}

fn python_listener_unix() {
    rust_client_to_python_listener("unix");
}

fn python_listener_tcp() {
    rust_client_to_python_listener("tcp");
}

/// A Python client with the wrong key: Rust's accept refuses it, Python
/// raises AuthenticationError.
fn wrong_key_refused_by_rust_listener() {
    for at in [Address::unique_unix(), Address::loopback()] {
        let l = Listener::bind(&at, KEY).unwrap();
        let Some(mut py) = Py::start(&["client", &l.address().to_string(), &hex(b"wrong"), "1"])
        else {
            return;
        };
        let r = l.accept_timeout(LINE_WAIT);
        assert!(matches!(r, Err(ConnectionError::AuthFailed)), "{r:?}");
        assert_eq!(py.line(), "authfail");
        py.finish();
    }
}

/// A Rust client with the wrong key: Python's Listener refuses it, Rust
/// returns AuthFailed.
fn wrong_key_refused_by_python_listener() {
    for fam in ["unix", "tcp"] {
        let Some(mut py) = Py::start(&["listen", fam, &hex(KEY)]) else {
            return;
        };
        let at = parse_address(&py.line());
        let r = Client::connect(&at, b"wrong");
        assert!(matches!(r, Err(ConnectionError::AuthFailed)), "{r:?}");
        assert_eq!(py.line(), "authfail");
        py.finish();
    }
}

/// The `{sha256}` generation, played by a script with the hmac module,
/// against a Rust listener that delivers either generation.
fn py312_client_to_rust_listener() {
    for (at, challenge) in [
        (Address::unique_unix(), Challenge::Sha256),
        (Address::loopback(), Challenge::Sha256),
        (Address::unique_unix(), Challenge::Legacy),
    ] {
        let opts = HandshakeOptions {
            challenge,
            ..Default::default()
        };
        let l = Listener::bind_with(&at, KEY, opts).unwrap();
        let Some(mut py) = Py::start(&["py312", "client", &l.address().to_string(), &hex(KEY)])
        else {
            return;
        };
        let mut c = l.accept_timeout(LINE_WAIT).unwrap();
        echo(&mut c);
        assert_eq!(py.line(), "ok");
        py.finish();
    }
}

/// The `{sha256}` generation as a listener, a Rust client delivering either
/// generation back.
fn py312_listener_to_rust_client() {
    for (fam, challenge) in [
        ("unix", Challenge::Sha256),
        ("tcp", Challenge::Sha256),
        ("unix", Challenge::Legacy),
    ] {
        let Some(mut py) = Py::start(&["py312", "listen", fam, &hex(KEY)]) else {
            return;
        };
        let at = parse_address(&py.line());
        let opts = HandshakeOptions {
            challenge,
            ..Default::default()
        };
        let r = Client::connect_with(&at, KEY, opts);
        let mut c = r.unwrap();
        c.send_bytes(b"hello 3.12").unwrap();
        assert_eq!(c.recv_bytes(100).unwrap(), b"hello 3.12");
        drop(c);
        assert_eq!(py.line(), "ok");
        py.finish();
    }
}

/// Rust on both ends, both generations, both transports; Pod values,
/// timeouts and poll.
fn rust_to_rust_messages() {
    for (at, challenge) in [
        (Address::unique_unix(), Challenge::Sha256),
        (Address::loopback(), Challenge::Legacy),
    ] {
        let opts = HandshakeOptions {
            challenge,
            ..Default::default()
        };
        let l = Listener::bind_with(&at, KEY, opts).unwrap();
        let addr = l.address().clone();
        let t = std::thread::spawn(move || {
            let mut c = Client::connect_with(&addr, KEY, opts).unwrap();
            c.send(&0x1234_5678_9abc_def0u64).unwrap();
            c.send_bytes(b"").unwrap();
            c.send_serde(&("serde", 7u32)).unwrap();
            let v: [u32; 3] = c.recv().unwrap();
            assert_eq!(v, [1, 2, 3]);
        });
        let mut c = l.accept().unwrap();
        assert_eq!(c.recv::<u64>().unwrap(), 0x1234_5678_9abc_def0);
        let mut buf = [0u8; 4];
        assert_eq!(c.recv_bytes_into(&mut buf).unwrap(), 0);
        let s: (String, u32) = c.recv_serde(100).unwrap();
        assert_eq!(s, ("serde".to_owned(), 7));
        // Nothing waits: poll says so, a timed receive times out and
        // consumes nothing.
        assert!(!c.poll(Duration::ZERO).unwrap());
        assert!(matches!(
            c.recv_bytes_timeout(10, Duration::from_millis(20)),
            Err(ConnectionError::Timeout)
        ));
        c.send(&[1u32, 2, 3]).unwrap();
        t.join().unwrap();
        // The client is gone.
        assert!(c.poll(Duration::from_secs(10)).unwrap());
        assert!(matches!(c.recv_bytes(10), Err(ConnectionError::Closed)));
    }
}

fn connected_pair(at: &Address) -> (SocketConnection, SocketConnection) {
    let l = Listener::bind(at, KEY).unwrap();
    let addr = l.address().clone();
    let t = std::thread::spawn(move || Client::connect(&addr, KEY).unwrap());
    let server = l.accept().unwrap();
    (server, t.join().unwrap())
}

/// The raw socket under a connection, to write what no connection would.
fn raw(c: &SocketConnection) -> std::fs::File {
    std::fs::File::from(c.as_fd().try_clone_to_owned().unwrap())
}

/// A client that connects and says nothing makes one accept time out;
/// the listener then serves the next client.
fn slow_loris_times_out_and_listener_goes_on() {
    for at in [Address::unique_unix(), Address::loopback()] {
        let opts = HandshakeOptions {
            timeout: Duration::from_millis(300),
            ..Default::default()
        };
        let l = Listener::bind_with(&at, KEY, opts).unwrap();
        let addr = l.address().clone();
        // Silent: connects, never answers.
        let silent: Box<dyn std::any::Any> = match &addr {
            Address::Unix(p) => Box::new(UnixStream::connect(p).unwrap()),
            Address::Tcp(a) => Box::new(std::net::TcpStream::connect(a).unwrap()),
        };
        let r = l.accept();
        assert!(matches!(r, Err(ConnectionError::Timeout)), "{r:?}");
        // Dribbling: half a header, then nothing.
        let mut dribble = match &addr {
            Address::Unix(p) => raw_stream(UnixStream::connect(p).unwrap().as_fd()),
            Address::Tcp(a) => raw_stream(std::net::TcpStream::connect(a).unwrap().as_fd()),
        };
        dribble.write_all(&[0, 0]).unwrap();
        let r = l.accept();
        assert!(matches!(r, Err(ConnectionError::Timeout)), "{r:?}");
        let t = std::thread::spawn(move || Client::connect(&addr, KEY).map(drop));
        l.accept().unwrap();
        t.join().unwrap().unwrap();
        drop((silent, dribble));
    }
}

fn raw_stream(fd: std::os::fd::BorrowedFd<'_>) -> std::fs::File {
    std::fs::File::from(fd.try_clone_to_owned().unwrap())
}

/// A frame that announces 1 GiB against a maximum of 1 MiB is refused
/// before any payload is read; a frame cut short is Truncated.
fn lying_frames() {
    for at in [Address::unique_unix(), Address::loopback()] {
        let (mut server, client) = connected_pair(&at);
        let mut w = raw(&client);
        w.write_all(&(1i32 << 30).to_be_bytes()).unwrap();
        w.write_all(b"just a few bytes").unwrap();
        let r = server.recv_bytes(1 << 20);
        assert!(
            matches!(r, Err(ConnectionError::TooLarge { len, max }) if len == 1 << 30 && max == 1 << 20),
            "{r:?}"
        );
        let mut small = [0u8; 16];
        let r = server.recv_bytes_into(&mut small);
        assert!(matches!(r, Err(ConnectionError::TooLarge { .. })), "{r:?}");
        // The long form too (-1, then 8 bytes).
        let (mut server2, client2) = connected_pair(&at);
        let mut w2 = raw(&client2);
        w2.write_all(&(-1i32).to_be_bytes()).unwrap();
        w2.write_all(&(1u64 << 40).to_be_bytes()).unwrap();
        let r = server2.recv_bytes(1 << 20);
        assert!(
            matches!(r, Err(ConnectionError::TooLarge { len, .. }) if len == 1 << 40),
            "{r:?}"
        );
        // Truncated: 100 announced, 10 sent, then the peer goes.
        let (mut server3, client3) = connected_pair(&at);
        let mut w3 = raw(&client3);
        w3.write_all(&100i32.to_be_bytes()).unwrap();
        w3.write_all(&[1; 10]).unwrap();
        drop((w3, client3));
        let r = server3.recv_bytes(1 << 20);
        assert!(matches!(r, Err(ConnectionError::Truncated)), "{r:?}");
        // Truncated in a long frame (consumed as it arrives): 1 MiB + 1
        // announced, 200 KiB sent.
        let (mut server4, client4) = connected_pair(&at);
        let mut w4 = raw(&client4);
        w4.write_all(&((1i32 << 20) + 1).to_be_bytes()).unwrap();
        w4.write_all(&vec![2; 200 << 10]).unwrap();
        drop((w4, client4));
        let r = server4.recv_bytes(2 << 20);
        assert!(matches!(r, Err(ConnectionError::Truncated)), "{r:?}");
        assert!(matches!(
            server4.recv_bytes(2 << 20),
            Err(ConnectionError::Broken)
        ));
        // A negative length other than -1.
        let (mut server5, client5) = connected_pair(&at);
        raw(&client5).write_all(&(-5i32).to_be_bytes()).unwrap();
        let r = server5.recv_bytes(10);
        assert!(matches!(r, Err(ConnectionError::BadLength(-5))), "{r:?}");
        drop((client, client2, w, w2, server, server2));
    }
}

/// A handshake frame over 256 bytes is refused, as Python does.
fn oversized_handshake_refused() {
    let at = Address::unique_unix();
    let l = Listener::bind(&at, KEY).unwrap();
    let Address::Unix(p) = l.address().clone() else {
        unreachable!()
    };
    let t = std::thread::spawn(move || {
        let mut s = UnixStream::connect(&p).unwrap();
        // Skip the challenge, send a long answer.
        let mut h = [0u8; 4];
        std::io::Read::read_exact(&mut s, &mut h).unwrap();
        let mut c = vec![0u8; u32::from_be_bytes(h) as usize];
        std::io::Read::read_exact(&mut s, &mut c).unwrap();
        // The listener may refuse (and close) before the payload is in:
        // a failed write here is fine.
        let _ = s.write_all(&300i32.to_be_bytes());
        let _ = s.write_all(&[0u8; 300]);
        s
    });
    let r = l.accept();
    assert!(matches!(r, Err(ConnectionError::BadChallenge)), "{r:?}");
    drop(t.join().unwrap());
}

/// A listener's Unix socket file is mode 0600 and goes with it; TCP's
/// default binds loopback.
fn unix_socket_mode_and_tcp_loopback() {
    let at = Address::unique_unix();
    let Address::Unix(p) = &at else {
        unreachable!()
    };
    let l = Listener::bind(&at, KEY).unwrap();
    let mode = std::fs::metadata(p).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    drop(l);
    assert!(!p.exists());

    let l = Listener::bind(&Address::loopback(), KEY).unwrap();
    let Address::Tcp(a) = l.address() else {
        unreachable!()
    };
    assert!(a.ip().is_loopback(), "{a}");
    assert_eq!(a.ip(), std::net::Ipv4Addr::LOCALHOST);
    assert_ne!(a.port(), 0);
}

/// The default key: random, 32 bytes, stable in the process, inherited
/// by a fork child (which can then authenticate to its parent).
fn default_authkey_is_inherited_by_fork() {
    let k = authkey();
    assert_eq!(k.len(), 32);
    assert_ne!(k, vec![0u8; 32]);
    let l = Listener::bind(&Address::unique_unix(), &k).unwrap();
    let addr = l.address().clone();
    let p = multiproc::Process::new(move || {
        let mut c = Client::connect(&addr, &authkey()).unwrap();
        c.send_bytes(&authkey()).unwrap();
    })
    .start()
    .unwrap();
    let mut c = l.accept_timeout(LINE_WAIT).unwrap();
    assert_eq!(c.recv_bytes(64).unwrap(), k);
    multiproc_tests::join_process_ok(&p, LINE_WAIT);
    set_authkey(b"replaced");
    assert_eq!(authkey(), b"replaced");
}

/// Entry point of the spawn/forkserver key tests. `args`: the parent's
/// listener path, a newline, the key the parent expects (hex).
/// Authenticates to the listener with `authkey()` and sends it; exit 3 if
/// this process's key is not the expected one (after trying the
/// handshake anyway, so the parent's `accept` fails at once), 4 if the
/// handshake fails.
fn entry_check_authkey(args: &[u8]) -> i32 {
    let Some((path, want)) = std::str::from_utf8(args)
        .ok()
        .and_then(|s| s.split_once('\n'))
    else {
        return 2;
    };
    let key = authkey();
    let c = Client::connect(&Address::Unix(path.into()), &key);
    if hex(&key) != want {
        eprintln!("child key {} != parent key {want}", hex(&key));
        return 3;
    }
    let Ok(mut c) = c else {
        return 4;
    };
    if c.send_bytes(&key).is_err() {
        return 5;
    }
    0
}

/// Starts an `entry_check_authkey` child with `method` and checks that it
/// has `key`: its own check (exit 0), a handshake with a listener keyed
/// with `key`, and the key it then sends.
fn child_has_key(method: multiproc::StartMethod, key: &[u8]) {
    let l = Listener::bind(&Address::unique_unix(), key).unwrap();
    let Address::Unix(path) = l.address().clone() else {
        unreachable!()
    };
    let args = format!("{}\n{}", path.to_str().unwrap(), hex(key));
    let p = multiproc::Process::entry("check_authkey", args)
        .start_method(method)
        .start()
        .unwrap();
    let accepted = l.accept_timeout(LINE_WAIT);
    let got = accepted.map(|mut c| c.recv_bytes(1024));
    let st = p.join_timeout(LINE_WAIT).expect("join (child hung?)");
    assert!(st.success(), "{method:?} child: {st:?} (3: another key)");
    assert_eq!(got.unwrap().unwrap(), key);
}

/// Python's `current_process().authkey` crosses every start method: a
/// spawn and a forkserver child have their parent's key (set with
/// `set_authkey`, of another length than a default key) before their
/// entry point runs, and authenticate to the parent's listener with it.
fn authkey_is_inherited_by_spawn_and_forkserver() {
    use multiproc::StartMethod;
    let key = b"the parent's key, not 32 bytes long";
    set_authkey(key);
    child_has_key(StartMethod::Spawn, key);
    child_has_key(StartMethod::Forkserver, key);
}

/// The fork server, started once, passes on the key its client has at
/// each start, not the one it had when the server started (nor the
/// server's own).
fn forkserver_child_gets_the_key_set_since() {
    use multiproc::StartMethod;
    set_authkey(b"first key");
    child_has_key(StartMethod::Forkserver, b"first key");
    set_authkey(b"second key");
    child_has_key(StartMethod::Forkserver, b"second key");
    child_has_key(StartMethod::Spawn, b"second key");
    // An empty key is a key too (Python allows it).
    set_authkey(b"");
    child_has_key(StartMethod::Forkserver, b"");
}

fn main() {
    multiproc::register_entry("check_authkey", entry_check_authkey).unwrap();
    multiproc::init();
    macro_rules! tests {
        ($($t:ident),* $(,)?) => { &[$(Test { name: stringify!($t), run: $t }),*] };
    }
    run_tests(
        tests![
            python_client_unix,
            python_client_tcp,
            python_listener_unix,
            python_listener_tcp,
            wrong_key_refused_by_rust_listener,
            wrong_key_refused_by_python_listener,
            py312_client_to_rust_listener,
            py312_listener_to_rust_client,
            rust_to_rust_messages,
            slow_loris_times_out_and_listener_goes_on,
            lying_frames,
            oversized_handshake_refused,
            unix_socket_mode_and_tcp_loopback,
            default_authkey_is_inherited_by_fork,
            authkey_is_inherited_by_spawn_and_forkserver,
            forkserver_child_gets_the_key_set_since,
        ],
        WATCHDOG,
    );
}
