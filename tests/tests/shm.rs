//! `multiproc::shm::SharedMemory` between real processes: named segments
//! opened by another process, anonymous ones inherited across fork, leaked
//! segments of a killed creator, and typed regions whose header another
//! process publishes.
//!
//! These tests fork (through `multiproc::spawn`), which needs a
//! single-threaded process: they run on the main thread, under this
//! binary's own harness (`harness = false`; libtest would run each test on
//! a thread of its own), and under cargo-nextest, one process per test.

use std::time::{Duration, Instant};

use multiproc::shm::{cleanup_leaked, SharedMemory, ShmError, ShmOptions};
use multiproc_core::region::{AttachError, Kind};
use multiproc_tests::process_support::{run_tests, Test};

const WATCHDOG: Duration = Duration::from_secs(60);

fn join_ok(p: &multiproc::Process) {
    match p.join_timeout(WATCHDOG) {
        Ok(s) => assert!(s.success(), "child {} ended with {s}", p.pid()),
        Err(multiproc::process::JoinError::Timeout) => {
            let _ = p.kill();
            panic!("child {} did not finish in time (deadlock?)", p.pid());
        }
        Err(e) => panic!("child {}: {e}", p.pid()),
    }
}

fn wait_for(shm: &mut SharedMemory, off: usize, want: &[u8]) {
    let end = Instant::now() + WATCHDOG;
    let mut buf = vec![0u8; want.len()];
    loop {
        shm.read_at(off, &mut buf).unwrap();
        if buf == want {
            return;
        }
        assert!(Instant::now() < end, "handshake at {off} timed out");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn named_segment_is_shared_with_a_process_that_opens_it() {
    let mut shm = SharedMemory::create_unique(1 << 20).unwrap();
    let name = shm.name().unwrap().to_owned();
    shm.write_at(0, b"ping").unwrap();
    let child = multiproc::spawn(move || -> Result<(), String> {
        let mut s = SharedMemory::open(&name).map_err(|e| e.to_string())?;
        if s.len() != 1 << 20 || s.is_owner() {
            return Err(format!("len {} owner {}", s.len(), s.is_owner()));
        }
        let mut b = [0u8; 4];
        s.read_at(0, &mut b).map_err(|e| e.to_string())?;
        if &b != b"ping" {
            return Err(format!("read {b:?}"));
        }
        s.write_at((1 << 20) - 4, b"pong")
            .map_err(|e| e.to_string())
    })
    .unwrap();
    join_ok(&child);
    let mut b = [0u8; 4];
    shm.read_at((1 << 20) - 4, &mut b).unwrap();
    assert_eq!(&b, b"pong");
}

fn anonymous_segment_is_inherited_across_fork() {
    let mut shm = SharedMemory::anonymous(4096).unwrap();
    let addr = shm.as_ptr() as usize;
    let child = multiproc::spawn(move || {
        // The mapping is inherited at the same address.
        let p = addr as *mut u8;
        // SAFETY: the inherited mapping is 4096 bytes; the parent does not
        // touch these bytes until it has joined this child.
        unsafe { std::ptr::copy_nonoverlapping(b"from child".as_ptr(), p, 10) };
    })
    .unwrap();
    join_ok(&child);
    let mut b = [0u8; 10];
    shm.read_at(0, &mut b).unwrap();
    assert_eq!(&b, b"from child");
}

fn forked_copy_of_the_creator_does_not_unlink() {
    let shm = SharedMemory::create_unique(64).unwrap();
    let name = shm.name().unwrap().to_owned();
    let addr = &shm as *const SharedMemory as usize;
    let n2 = name.clone();
    let child = multiproc::spawn(move || -> Result<(), String> {
        // SAFETY: the child's memory is a copy of the parent's, where `shm`
        // lives at `addr` for the whole test; the child's copy of it is
        // never dropped otherwise (the child leaves with _exit), so this
        // read makes the only owner of it in the child.
        let inherited = unsafe { std::ptr::read(addr as *const SharedMemory) };
        if !inherited.is_owner() {
            return Err("the inherited copy should be the creating handle".into());
        }
        drop(inherited);
        SharedMemory::open(&n2).map(drop).map_err(|e| e.to_string())
    })
    .unwrap();
    join_ok(&child);
    assert!(SharedMemory::open(&name).is_ok());
    drop(shm);
    assert!(matches!(
        SharedMemory::open(&name),
        Err(ShmError::NotFound { .. })
    ));
}

fn open_or_create_races_to_one_creator() {
    let name = format!("/mp-test-race-{}", std::process::id());
    let children: Vec<_> = (0..4)
        .map(|_| {
            let name = name.clone();
            multiproc::spawn(move || -> i32 {
                match SharedMemory::open_or_create(&name, 8192) {
                    Ok(mut s) => {
                        s.set_persist(true);
                        i32::from(s.is_owner())
                    }
                    Err(_) => 2,
                }
            })
            .unwrap()
        })
        .collect();
    let mut owners = 0;
    for c in &children {
        let code = c.join_timeout(WATCHDOG).unwrap().code().unwrap();
        assert!(code < 2, "open_or_create failed in a child");
        owners += code;
    }
    SharedMemory::unlink_name(&name).unwrap();
    assert_eq!(owners, 1, "exactly one process creates the segment");
}

fn wait_to_be_killed() {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn leaked_segment_of_a_killed_creator_is_cleaned_up() {
    let mut board = SharedMemory::anonymous(4096).unwrap();
    let addr = board.as_ptr() as usize;
    let child = multiproc::spawn(move || {
        let seg = ShmOptions::new().size(4096).create_unique().unwrap();
        let name = seg.name().unwrap().as_bytes().to_vec();
        // Publish the name through the board inherited from the parent (at
        // the same address): bytes first, then the length, which the
        // parent polls. Then wait to be killed, holding the segment.
        let p = addr as *mut u8;
        // SAFETY: the inherited mapping is 4096 bytes; the name fits after
        // the 8-byte length; the parent only reads until the length is set.
        unsafe {
            std::ptr::copy_nonoverlapping(name.as_ptr(), p.add(8), name.len());
            std::ptr::write_volatile(p.cast::<u64>(), name.len() as u64);
        }
        wait_to_be_killed();
    })
    .unwrap();
    let end = Instant::now() + WATCHDOG;
    let len = loop {
        let mut b = [0u8; 8];
        board.read_at(0, &mut b).unwrap();
        let len = u64::from_le_bytes(b) as usize;
        if len != 0 {
            break len;
        }
        assert!(Instant::now() < end, "child never created its segment");
        std::thread::sleep(Duration::from_millis(1));
    };
    let mut name = vec![0u8; len];
    board.read_at(8, &mut name).unwrap();
    let name = String::from_utf8(name).unwrap();
    assert!(SharedMemory::open(&name).is_ok());
    // A live creator's segment is left alone.
    assert!(!cleanup_leaked().unwrap().contains(&name));
    child.kill().unwrap();
    assert_eq!(child.join().unwrap().signal(), Some(libc::SIGKILL));
    let removed = cleanup_leaked().unwrap();
    assert!(removed.contains(&name), "{name} not in {removed:?}");
    assert!(matches!(
        SharedMemory::open(&name),
        Err(ShmError::NotFound { .. })
    ));
}

fn typed_region_published_by_another_process_is_attached() {
    let shm = SharedMemory::create_unique(4096).unwrap();
    let name = shm.name().unwrap().to_owned();
    // Unpublished header: not ready.
    assert_eq!(
        shm.attach_in(Kind::Mpmc, |r| Ok(r.len())).unwrap_err(),
        AttachError::NotReady
    );
    // Another process fills in a header (what a core structure's `create`
    // does) and publishes it last, after a delay: the timed attach waits.
    let child = multiproc::spawn(move || -> Result<(), String> {
        let mut s = SharedMemory::open(&name).map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_millis(50));
        let w = |s: &mut SharedMemory, off: usize, v: &[u8]| s.write_at(off, v).unwrap();
        w(&mut s, 0, &multiproc_core::region::MAGIC.to_le_bytes());
        w(
            &mut s,
            8,
            &multiproc_core::region::LAYOUT_VERSION.to_le_bytes(),
        );
        w(&mut s, 12, &(Kind::Mpmc as u32).to_le_bytes());
        w(&mut s, 16, &8u64.to_le_bytes()); // element size
        w(&mut s, 24, &8u64.to_le_bytes()); // element align
        w(&mut s, 40, &16u64.to_le_bytes()); // capacity
        w(&mut s, 48, &1024u64.to_le_bytes()); // total size
        w(&mut s, 56, &2u32.to_le_bytes()); // state: ready (written last)
        Ok(())
    })
    .unwrap();
    let got = shm.attach_in_timeout(Kind::Mpmc, WATCHDOG, |r| Ok(r.len()));
    join_ok(&child);
    assert_eq!(got, Ok(4096));
    let h = shm.header().unwrap();
    assert_eq!(h.kind(), Some(Kind::Mpmc));
    assert_eq!(h.capacity(), 16);
    assert_eq!(
        shm.attach_in(Kind::Spsc, |r| Ok(r.len())).unwrap_err(),
        AttachError::KindMismatch {
            found: Kind::Mpmc as u32,
            expected: Kind::Spsc
        }
    );
}

/// Real core structures built in named segments by one process and
/// attached (header validated) by others: an `AtomicValue` counter that
/// four processes increment, and a lock-protected `Value`.
fn core_structures_in_named_segments_across_processes() {
    use multiproc_core::value::{AtomicValue, Value};

    let counter_shm =
        SharedMemory::create_unique(AtomicValue::<u64>::memory_size().unwrap()).unwrap();
    let value_shm = SharedMemory::create_unique(Value::<[u64; 2]>::memory_size().unwrap()).unwrap();
    let counter = counter_shm
        .create_in(|r| AtomicValue::<u64>::create(r, 0))
        .unwrap();
    let value = value_shm
        .create_in(|r| Value::create(r, [0u64; 2]))
        .unwrap();
    // Creating twice in the same segment is refused by core.
    assert!(counter_shm
        .create_in(|r| AtomicValue::<u64>::create(r, 0))
        .is_err());
    // Attaching with the wrong structure kind is refused by the helper.
    assert!(matches!(
        counter_shm.attach_in(Kind::Value, Value::<[u64; 2]>::attach),
        Err(AttachError::KindMismatch { .. })
    ));

    let names = (
        counter_shm.name().unwrap().to_owned(),
        value_shm.name().unwrap().to_owned(),
    );
    let children: Vec<_> = (0..4)
        .map(|_| {
            let (c, v) = names.clone();
            multiproc::spawn(move || -> Result<(), String> {
                let cs = SharedMemory::open(&c).map_err(|e| e.to_string())?;
                let vs = SharedMemory::open(&v).map_err(|e| e.to_string())?;
                let counter = cs
                    .attach_in(Kind::AtomicValue, AtomicValue::<u64>::attach)
                    .map_err(|e| e.to_string())?;
                let value = vs
                    .attach_in(Kind::Value, Value::<[u64; 2]>::attach)
                    .map_err(|e| e.to_string())?;
                for _ in 0..1000 {
                    counter.fetch_add(1);
                    let mut g = value.lock().map_err(|_| "poisoned".to_owned())?;
                    g[0] += 1;
                    g[1] += 2;
                }
                Ok(())
            })
            .unwrap()
        })
        .collect();
    for c in &children {
        join_ok(c);
    }
    assert_eq!(counter.load(), 4000);
    assert_eq!(value.get().unwrap(), [4000, 8000]);
}

fn typed_region_larger_than_the_segment_is_refused() {
    let mut shm = SharedMemory::create_unique(4096).unwrap();
    shm.write_at(12, &(Kind::Array as u32).to_le_bytes())
        .unwrap();
    shm.write_at(48, &(1u64 << 20).to_le_bytes()).unwrap();
    shm.write_at(56, &2u32.to_le_bytes()).unwrap();
    assert_eq!(
        shm.attach_in(Kind::Array, |_| Ok(())).unwrap_err(),
        AttachError::TooSmall {
            needed: 1 << 20,
            available: 4096
        }
    );
    wait_for(&mut shm, 56, &2u32.to_le_bytes());
}

fn main() {
    macro_rules! tests {
        ($($t:ident),* $(,)?) => { &[$(Test { name: stringify!($t), run: $t }),*] };
    }
    run_tests(
        tests![
            named_segment_is_shared_with_a_process_that_opens_it,
            anonymous_segment_is_inherited_across_fork,
            forked_copy_of_the_creator_does_not_unlink,
            open_or_create_races_to_one_creator,
            leaked_segment_of_a_killed_creator_is_cleaned_up,
            typed_region_published_by_another_process_is_attached,
            core_structures_in_named_segments_across_processes,
            typed_region_larger_than_the_segment_is_refused,
        ],
        WATCHDOG,
    );
}
