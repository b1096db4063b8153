use super::*;

#[test]
fn names_are_validated() {
    let bad = |n: &str| match ShmName::parse(n) {
        Err(ShmError::InvalidName { reason, .. }) => reason,
        other => panic!("{n:?} accepted: {:?}", other.map(|n| n.text)),
    };
    assert_eq!(bad(""), NameError::Empty);
    assert_eq!(bad("/"), NameError::Empty);
    assert_eq!(bad("/a/b"), NameError::InnerSlash);
    assert_eq!(bad("//a"), NameError::InnerSlash);
    assert_eq!(bad("a\0b"), NameError::Nul);
    assert_eq!(bad(".."), NameError::Dot);
    assert!(matches!(
        bad(&"x".repeat(sys::SHM_NAME_MAX)),
        NameError::TooLong { .. }
    ));
    assert_eq!(ShmName::parse("psm_1").unwrap().text, "/psm_1");
    assert_eq!(ShmName::parse("/psm_1").unwrap().text, "/psm_1");
    assert!(ShmName::parse(&"x".repeat(sys::SHM_NAME_MAX - 1)).is_ok());
}

#[test]
fn generated_names_parse_back() {
    let n = generate_name();
    let ns = multiproc_core::identity::pid_namespace();
    assert_eq!(generated_creator(&n), Some((Identity::current(), ns)));
    assert!(ShmName::parse(&n).is_ok());
    assert_eq!(
        generated_creator("/mp-12-u-0-3-0123456789abcdef"),
        Some((Identity::new(12, None).unwrap(), None))
    );
    assert_eq!(
        generated_creator("/mp-12-77-9-3-0123456789abcdef"),
        Some((Identity::new(12, Some(77)).unwrap(), Some(9)))
    );
    assert_eq!(generated_creator("/mp-12-3-nothex"), None);
    assert_eq!(generated_creator("/mine"), None);
    // The format of earlier versions (no start time, no namespace).
    assert_eq!(generated_creator("/mp-12-3-0123456789abcdef"), None);
    assert_eq!(generated_creator("/mp-12-1-2-3-0123456789abcdef-x"), None);
}

/// The shared lock of a handle outlives its descriptor (closed right
/// after mapping): the mapping keeps the open file description, which
/// holds the lock, until it is unmapped. What `cleanup_leaked` relies on.
#[test]
fn a_mapping_keeps_its_shared_lock_until_dropped() {
    let try_exclusive = |name: &ShmName| {
        let fd = sys::shm_open(&name.c, libc::O_RDONLY, 0).unwrap();
        sys::flock(fd.as_fd(), libc::LOCK_EX | libc::LOCK_NB).is_ok()
    };
    let mut a = ShmOptions::new()
        .size(4096)
        .persist(true)
        .create_unique()
        .unwrap();
    let name = ShmName::parse(a.name().unwrap()).unwrap();
    assert!(!try_exclusive(&name), "the creator holds it");
    a.write_at(0, b"x").unwrap();
    let b = SharedMemory::open(&name.text).unwrap();
    drop(a);
    assert!(!try_exclusive(&name), "the opener holds it");
    drop(b);
    assert!(try_exclusive(&name), "nobody maps it");
    // Our own creator is alive: kept even though nobody holds it.
    assert!(!cleanup_leaked().unwrap().contains(&name.text));
    SharedMemory::unlink_name(&name.text).unwrap();
}

#[test]
fn create_open_unlink_and_errors() {
    let mut a = SharedMemory::create_unique(10_000).unwrap();
    let name = a.name().unwrap().to_owned();
    assert!(a.is_owner());
    assert_eq!(a.python_name().unwrap(), &name[1..]);
    assert_eq!(a.as_ptr() as usize % 4096, 0);
    assert!(matches!(
        SharedMemory::create(&name, 10),
        Err(ShmError::AlreadyExists { .. })
    ));
    let mut b = SharedMemory::open(&name[1..]).unwrap();
    assert!(!b.is_owner());
    assert_eq!(b.len(), 10_000);
    a.write_at(9_990, b"0123456789").unwrap();
    let mut buf = [0u8; 10];
    b.read_at(9_990, &mut buf).unwrap();
    assert_eq!(&buf, b"0123456789");
    assert!(matches!(
        b.read_at(9_991, &mut buf),
        Err(ShmError::OutOfBounds { .. })
    ));
    assert!(matches!(
        b.write_at(usize::MAX, b"x"),
        Err(ShmError::OutOfBounds { .. })
    ));
    assert!(matches!(
        ShmOptions::new().size(20_000).open(&name),
        Err(ShmError::SizeMismatch {
            expected: 20_000,
            actual: 10_000,
            ..
        })
    ));
    drop(b);
    drop(a);
    assert!(matches!(
        SharedMemory::open(&name),
        Err(ShmError::NotFound { .. })
    ));
    assert!(matches!(
        SharedMemory::create("/x", 0),
        Err(ShmError::ZeroSize)
    ));
    assert!(matches!(
        SharedMemory::anonymous(0),
        Err(ShmError::ZeroSize)
    ));
}

#[test]
fn persist_and_explicit_unlink() {
    let mut a = SharedMemory::create_unique(64).unwrap();
    let name = a.name().unwrap().to_owned();
    a.persist();
    drop(a);
    let b = SharedMemory::open(&name).unwrap();
    b.unlink().unwrap();
    assert!(matches!(b.unlink(), Err(ShmError::NotFound { .. })));
    assert!(matches!(
        SharedMemory::unlink_name(&name),
        Err(ShmError::NotFound { .. })
    ));
    let anon = SharedMemory::anonymous(10).unwrap();
    assert!(matches!(anon.unlink(), Err(ShmError::Anonymous)));
    assert_eq!(anon.name(), None);
}

#[test]
fn creator_does_not_unlink_a_recreated_name() {
    let a = SharedMemory::create_unique(64).unwrap();
    let name = a.name().unwrap().to_owned();
    SharedMemory::unlink_name(&name).unwrap();
    let b = SharedMemory::create(&name, 128).unwrap();
    drop(a);
    let c = SharedMemory::open(&name).unwrap();
    assert_eq!(c.len(), 128);
    drop(c);
    drop(b);
    assert!(SharedMemory::open(&name).is_err());
}

#[test]
fn mode_is_exact() {
    let a = ShmOptions::new()
        .size(64)
        .mode(0o640)
        .create_unique()
        .unwrap();
    let m = std::fs::metadata(format!("/dev/shm{}", a.name().unwrap())).unwrap();
    assert_eq!(m.mode() & 0o777, 0o640);
    let b = SharedMemory::create_unique(64).unwrap();
    let m = std::fs::metadata(format!("/dev/shm{}", b.name().unwrap())).unwrap();
    assert_eq!(m.mode() & 0o777, 0o600);
}

#[test]
fn open_or_create_reports_ownership() {
    let name = format!("/mp-test-ooc-{}", sys::getpid());
    let a = SharedMemory::open_or_create(&name, 128).unwrap();
    assert!(a.is_owner());
    let b = SharedMemory::open_or_create(&name, 128).unwrap();
    assert!(!b.is_owner());
    assert!(matches!(
        SharedMemory::open_or_create(&name, 4096),
        Err(ShmError::SizeMismatch { .. })
    ));
}

#[test]
fn volatile_copy_handles_every_alignment() {
    let src: Vec<u8> = (0..64u8).collect();
    for s in 0..9 {
        for d in 0..9 {
            for len in [0, 1, 7, 8, 9, 30] {
                let mut dst = vec![0xffu8; 64];
                // SAFETY: both ranges are in bounds of distinct buffers.
                unsafe { volatile_copy(src.as_ptr().add(s), dst.as_mut_ptr().add(d), len) };
                assert_eq!(&dst[d..d + len], &src[s..s + len]);
                assert!(dst[..d].iter().all(|&b| b == 0xff));
                assert!(dst[d + len..].iter().all(|&b| b == 0xff));
            }
        }
    }
}

#[test]
fn attach_in_checks_the_header() {
    let shm = SharedMemory::anonymous(4096).unwrap();
    // Zeroed memory: never published.
    assert_eq!(
        shm.attach_in(Kind::Mpmc, |_| Ok(())).unwrap_err(),
        AttachError::NotReady
    );
    assert_eq!(
        shm.attach_in_timeout(Kind::Mpmc, Duration::from_millis(5), |_| Ok(()))
            .unwrap_err(),
        AttachError::NotReady
    );
    assert!(!shm.header().unwrap().is_ready());
}
