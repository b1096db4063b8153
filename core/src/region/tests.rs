extern crate std;
use super::*;

use crate::test_util::{buf, bytes};

fn spec(count: u64) -> Spec {
    Spec {
        kind: Kind::Array,
        elem: ElemType::of::<u64>(),
        capacity: count,
        count,
    }
}

fn open(r: Region<'_>) -> Result<Parts<'_, u64, u64>, AttachError> {
    Parts::<u64, u64>::open(r, Kind::Array, ElemType::of::<u64>(), Some, None)
}

#[test]
fn elements_are_not_written_in_a_region_marked_zeroed() {
    let mut b = buf(1024);
    let mem = bytes(&mut b);
    let elems = Layout::of::<u64, u64>(4).unwrap().array;
    // Mark the elements' bytes to see whether they are written (the
    // mark breaks `assume_zeroed`'s promise: the elements then start
    // with these bytes, which is what this test looks for).
    mem[elems..elems + 32].fill(0xab);
    let r = Region::from_mut_slice(mem);
    // SAFETY: deliberately untrue for the elements, as explained above;
    // u64 elements are valid for every bit pattern.
    let zeroed = unsafe { r.assume_zeroed() };
    assert!(zeroed.is_zeroed() && !r.is_zeroed());
    assert!(zeroed.split_off(128).unwrap().is_zeroed());
    let p = Parts::<u64, u64>::create_zeroed_elems(zeroed, spec(4), || 0, |_| 0).unwrap();
    assert_eq!(*p.elem(3), 0xabab_abab_abab_abab, "skipped");
    // Unmarked, every element is written.
    let mut b = buf(1024);
    let mem = bytes(&mut b);
    mem[elems..elems + 32].fill(0xab);
    let r = Region::from_mut_slice(mem);
    let p = Parts::<u64, u64>::create_zeroed_elems(r, spec(4), || 0, |_| 0).unwrap();
    assert_eq!(*p.elem(3), 0, "written");
}

#[test]
fn split_off_stays_inside() {
    let mut b = buf(256);
    let r = Region::from_mut_slice(bytes(&mut b));
    let len = r.len();
    assert_eq!(r.split_off(len).unwrap().len(), 0);
    assert!(r.split_off(len + 1).is_none());
    let tail = r.split_off(128).unwrap();
    assert_eq!(tail.as_ptr() as usize, r.as_ptr() as usize + 128);
    assert!(!tail.is_zeroed());
}

#[test]
fn create_then_open_round_trips() {
    let mut b = buf(512);
    let r = Region::from_mut_slice(bytes(&mut b));
    let p = Parts::<u64, u64>::create(r, spec(10), || 7, |i| i as u64).unwrap();
    assert_eq!(*p.body, 7);
    let q = open(r).unwrap();
    assert_eq!(q.count, 10);
    assert_eq!(*q.elem(9), 9);
    assert_eq!(q.header.capacity(), 10);
    assert_eq!(q.header.kind(), Some(Kind::Array));
}

#[test]
fn create_twice_is_refused() {
    let mut b = buf(512);
    let r = Region::from_mut_slice(bytes(&mut b));
    Parts::<u64, u64>::create(r, spec(1), || 0, |_| 0).unwrap();
    assert_eq!(
        Parts::<u64, u64>::create(r, spec(1), || 0, |_| 0).unwrap_err(),
        InitError::AlreadyInitialized
    );
}

#[test]
fn create_rejects_small_and_misaligned() {
    let mut b = buf(256);
    let all = bytes(&mut b);
    let r = Region::from_mut_slice(&mut all[..200]);
    assert!(matches!(
        Parts::<u64, u64>::create(r, spec(100), || 0, |_| 0),
        Err(InitError::TooSmall { .. })
    ));
    let r = Region::from_mut_slice(&mut all[8..]);
    assert!(matches!(
        Parts::<u64, u64>::create(r, spec(1), || 0, |_| 0),
        Err(InitError::Misaligned { required: 128 })
    ));
    let r = Region::from_mut_slice(all);
    assert!(matches!(
        Parts::<u64, u64>::create(r, spec(u64::MAX), || 0, |_| 0),
        Err(InitError::CapacityOverflow { .. })
    ));
}

#[test]
fn open_reports_every_header_error() {
    let mut b = buf(512);
    let all = bytes(&mut b);
    {
        let r = Region::from_mut_slice(&mut all[..64]);
        assert!(matches!(open(r), Err(AttachError::TooSmall { .. })));
    }
    {
        let r = Region::from_mut_slice(&mut all[8..]);
        assert!(matches!(open(r), Err(AttachError::Misaligned { .. })));
    }
    {
        let r = Region::from_mut_slice(&mut *all);
        assert_eq!(open(r).unwrap_err(), AttachError::NotReady);
        let t = Parts::<u64, u64>::open(
            r,
            Kind::Array,
            ElemType::of::<u64>(),
            Some,
            Some(Deadline::after(Duration::from_millis(20))),
        );
        assert_eq!(t.unwrap_err(), AttachError::NotReady);
        Parts::<u64, u64>::create(r, spec(4), || 0, |_| 0).unwrap();
        assert!(open(r).is_ok());
        let wrong_kind = Parts::<u64, u64>::open(r, Kind::Spsc, ElemType::of::<u64>(), Some, None);
        assert!(matches!(
            wrong_kind,
            Err(AttachError::KindMismatch { found: 10, .. })
        ));
        let wrong_type =
            Parts::<u64, u64>::open(r, Kind::Array, ElemType::of::<u64>().tagged(5), Some, None);
        assert!(matches!(wrong_type, Err(AttachError::TypeMismatch { .. })));
        let bad_cap =
            Parts::<u64, u64>::open(r, Kind::Array, ElemType::of::<u64>(), |_| None, None);
        assert!(matches!(
            bad_cap,
            Err(AttachError::CorruptCapacity { capacity: 4 })
        ));
    }
    // Corrupt individual fields.
    let corrupt = |all: &mut [u8], off: usize, val: &[u8]| {
        let mut copy = buf(512);
        let c = bytes(&mut copy);
        c.copy_from_slice(all);
        c[off..off + val.len()].copy_from_slice(val);
        let r = Region::from_mut_slice(c);
        open(r).unwrap_err()
    };
    assert!(matches!(
        corrupt(all, 0, &[0]),
        AttachError::BadMagic { .. }
    ));
    assert!(matches!(
        corrupt(all, 8, &[9]),
        AttachError::VersionMismatch { found: 9, .. }
    ));
    // capacity (offset 40) says 1000: layout no longer matches the size.
    assert!(matches!(
        corrupt(all, 40, &1000u64.to_le_bytes()),
        AttachError::CorruptCapacity { capacity: 1000 }
    ));
    // state (offset 56) is garbage.
    assert!(matches!(
        corrupt(all, 56, &[77]),
        AttachError::CorruptState { found: 77 }
    ));
    // total size and capacity both claim more than the memory holds.
    let mut copy = buf(512);
    let c = bytes(&mut copy);
    c.copy_from_slice(all);
    c[40..48].copy_from_slice(&100u64.to_le_bytes());
    let big = Layout::of::<u64, u64>(100).unwrap().total as u64;
    c[48..56].copy_from_slice(&big.to_le_bytes());
    assert!(matches!(
        open(Region::from_mut_slice(c)),
        Err(AttachError::TooSmall { .. })
    ));
}

#[test]
fn attach_from_another_pid_namespace_is_refused() {
    let mut b = buf(512);
    let all = bytes(&mut b);
    let r = Region::from_mut_slice(&mut *all);
    let p = Parts::<u64, u64>::create(r, spec(1), || 0, |_| 0).unwrap();
    let ours = crate::identity::pid_namespace().unwrap();
    assert_eq!(p.header.creator_pid_namespace(), Some(ours));
    assert!(open(r).is_ok());
    // pid_ns at offset 64: another namespace.
    all[64..72].copy_from_slice(&(ours + 1).to_le_bytes());
    let r = Region::from_mut_slice(&mut *all);
    assert_eq!(
        open(r).unwrap_err(),
        AttachError::ForeignPidNamespace {
            creator: ours + 1,
            ours
        }
    );
    // Unknown (the creator could not read it): allowed.
    all[64..72].copy_from_slice(&0u64.to_le_bytes());
    let r = Region::from_mut_slice(&mut *all);
    assert!(open(r).is_ok());
    let e = AttachError::ForeignPidNamespace {
        creator: 4026531836,
        ours: 4026532290,
    };
    assert_eq!(
        std::format!("{e}"),
        "region made in another pid namespace (pid:[4026531836], this process is in pid:[4026532290])"
    );
}

#[test]
fn layout_is_aligned_and_checked() {
    let l = Layout::of::<u64, u64>(3).unwrap();
    assert_eq!(l.body, 128);
    assert_eq!(l.array, 136);
    assert_eq!(l.total, 160);
    assert!(Layout::of::<u64, u64>(u64::MAX / 4).is_none());
    let l = Layout::of::<u64, u8>(0).unwrap();
    assert_eq!(l.total, 136);
}

#[test]
fn errors_display_lowercase() {
    let e = AttachError::KindMismatch {
        found: 1,
        expected: Kind::Mpmc,
    };
    let s = std::format!("{e}");
    assert_eq!(s, "region holds a Spsc, not a Mpmc");
    assert!(std::format!("{}", InitError::AlreadyInitialized).starts_with('r'));
}

/// A shared anonymous mapping of `len` bytes (page-aligned, zeroed) that a
/// fork child writes into and the parent sees.
fn shared_pages(len: usize) -> &'static mut [u8] {
    // SAFETY: a fresh anonymous mapping; the result is checked. It is
    // never unmapped (a test leaks one page).
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert!(p != libc::MAP_FAILED);
    // SAFETY: `len` bytes mapped above, owned by the caller from now on.
    unsafe { core::slice::from_raw_parts_mut(p.cast::<u8>(), len) }
}

/// A creator SIGKILLed between claiming a region and publishing it (in its
/// body constructor): an attacher learns at once that it will never be
/// ready, whether it waits or not, instead of `NotReady` at its deadline.
#[test]
fn creator_killed_mid_init_is_reported_dead() {
    let mem = shared_pages(4096);
    let r = Region::from_mut_slice(mem);
    // SAFETY: the child claims the region, then kills itself inside
    // `create`; it allocates nothing and takes no lock.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let _ = Parts::<u64, u64>::create(
            r,
            spec(4),
            || {
                // SAFETY: raise has no preconditions; SIGKILL ends us here.
                unsafe { libc::raise(libc::SIGKILL) };
                0
            },
            |_| 0,
        );
        // SAFETY: not reached; leaves the child if it were.
        unsafe { libc::_exit(3) };
    }
    assert!(pid > 0);
    let mut status = 0;
    // SAFETY: `pid` is our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL);
    let died = Err(AttachError::CreatorDied { pid: pid as u32 });
    assert_eq!(open(r).map(|_| ()), died);
    let t = std::time::Instant::now();
    let waited = Parts::<u64, u64>::open(
        r,
        Kind::Array,
        ElemType::of::<u64>(),
        Some,
        Some(Deadline::after(Duration::from_secs(30))),
    );
    assert_eq!(waited.map(|_| ()), died);
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "waited out the deadline"
    );
    assert_eq!(r.header().unwrap().check_creator(), died);
    // Another creator is still refused: the memory is not reused in place.
    assert_eq!(
        Parts::<u64, u64>::create(r, spec(4), || 0, |_| 0).map(|_| ()),
        Err(InitError::AlreadyInitialized)
    );
}

/// A creator that publishes and then exits is not a creator that died
/// mid-init: the region attaches.
#[test]
fn creator_that_exited_after_publishing_is_not_dead_mid_init() {
    let mem = shared_pages(4096);
    let r = Region::from_mut_slice(mem);
    // SAFETY: the child builds the region and `_exit`s; it allocates
    // nothing and takes no lock.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let ok = Parts::<u64, u64>::create(r, spec(4), || 5, |i| i as u64).is_ok();
        // SAFETY: leaves the forked child at once.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: `pid` is our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    assert_eq!(r.header().unwrap().check_creator(), Ok(()));
    let p = open(r).unwrap();
    assert_eq!(*p.body, 5);
}
