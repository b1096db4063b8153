//! loom models of a region's init state machine (uninit -> initializing ->
//! ready): a creator builds while others attach or create. Threads stand
//! for processes, `sync::loom_die` for a `kill -9`. Run with
//! `RUSTFLAGS="--cfg multiproc_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p multiproc-core --release --lib loom_init`.
//!
//! Under loom the header's atomics are objects that must be built before
//! anyone reads them: the model builds them before any thread starts, and
//! the creating threads say so (`sync::loom_header_prebuilt`), so that
//! `create` does not build them again under an attacher's feet.

extern crate std;

use super::*;
use crate::sync::UnsafeCell;
use ::loom::thread;

/// A body that the creator writes: loom checks every read of it for a
/// race with the creator's write (an attacher that sees `ready` before the
/// body is published).
#[repr(C)]
struct Body {
    value: UnsafeCell<u64>,
}

// SAFETY: repr(C) over one facade UnsafeCell of a u64 (test-only type).
unsafe impl ShmSafe for Body {}

/// An element, written by the creator too.
#[repr(C)]
struct Elem {
    value: UnsafeCell<u64>,
}

// SAFETY: as for Body.
unsafe impl ShmSafe for Elem {}

const ELEMS: u64 = 2;

fn spec() -> Spec {
    Spec {
        kind: Kind::External,
        elem: ElemType::of::<Elem>().tagged(7),
        capacity: ELEMS,
        count: ELEMS,
    }
}

/// Model memory for one region, its header's atomics built (uninit).
fn region() -> Region<'static> {
    let mem = crate::test_util::leak(Layout::of::<Body, Elem>(ELEMS).unwrap().total);
    // SAFETY: the buffer is 128-aligned and at least a header long; no
    // thread uses it yet.
    unsafe {
        mem.as_mut_ptr()
            .cast::<RegionHeader>()
            .write(RegionHeader::new_uninit())
    };
    Region::from_mut_slice(mem)
}

fn create(r: Region<'static>) -> Result<Parts<'static, Body, Elem>, InitError> {
    crate::sync::loom_header_prebuilt();
    Parts::create(
        r,
        spec(),
        || Body {
            value: UnsafeCell::new(41),
        },
        |i| Elem {
            value: UnsafeCell::new(i as u64 + 1),
        },
    )
}

fn open(
    r: Region<'static>,
    deadline: Option<Deadline>,
) -> Result<Parts<'static, Body, Elem>, AttachError> {
    Parts::open(
        r,
        Kind::External,
        ElemType::of::<Elem>().tagged(7),
        |c| (c == ELEMS).then_some(ELEMS),
        deadline,
    )
}

/// What an attacher checks once attached: the body and every element as
/// the creator wrote them (loom reports a race if they were not published
/// with `ready`).
fn check_whole(p: &Parts<'static, Body, Elem>) {
    // SAFETY: nobody writes these after create; loom checks the read.
    assert_eq!(p.body.value.with(|v| unsafe { *v }), 41);
    for i in 0..ELEMS as usize {
        // SAFETY: as above.
        assert_eq!(p.elem(i).value.with(|v| unsafe { *v }), i as u64 + 1);
    }
    assert_eq!(p.header.capacity(), ELEMS);
    assert!(p.header.is_ready());
}

/// Two creators race for one region while an attacher retries `attach`
/// (no waiting): exactly one creator builds it, the other is told it is
/// initialised already, and the attacher gets either `NotReady` or the
/// whole structure, never a half-built one (a stale header field would be
/// a validation error; a body read before the creator's write, a loom
/// race).
#[test]
fn attacher_never_sees_a_half_built_region() {
    ::loom::model(|| {
        let r = region();
        let creators: std::vec::Vec<_> = (0..2)
            .map(|_| thread::spawn(move || create(r).map(|_| ())))
            .collect();
        loop {
            match open(r, None) {
                Ok(p) => {
                    check_whole(&p);
                    break;
                }
                Err(AttachError::NotReady) => thread::yield_now(),
                Err(e) => panic!("attach saw a half-built region: {e:?}"),
            }
        }
        let made: std::vec::Vec<_> = creators.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(
            made.iter().filter(|m| m.is_ok()).count(),
            1,
            "not exactly one creator: {made:?}"
        );
        assert!(made.contains(&Err(InitError::AlreadyInitialized)));
    });
}

/// A creator killed between claiming the region and publishing it (the
/// first steps of `create`: the claim and the record of who claimed it,
/// then `loom_die`): nobody hangs on it, and once the death is visible an
/// attacher is told the creator died (`CreatorDied`) rather than
/// `NotReady`; another creator is told it is initialised already. An
/// attacher racing the death may find it uninit, claimed by nobody known
/// yet, or by a live creator: `NotReady` in all three.
#[test]
fn creator_dying_mid_init_is_reported_dead() {
    ::loom::model(|| {
        let r = region();
        let creator = thread::spawn(move || {
            let h = r.header().unwrap();
            let claimed = h
                .state
                .compare_exchange(
                    STATE_UNINIT,
                    STATE_INITIALIZING,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok();
            h.record_creator();
            crate::sync::loom_die();
            (claimed, crate::sync::current_identity())
        });
        let early = open(r, Some(Deadline::after(Duration::ZERO))).map(|_| ());
        assert!(
            matches!(
                early,
                Err(AttachError::NotReady | AttachError::CreatorDied { .. })
            ),
            "{early:?}"
        );
        let (claimed, word) = creator.join().unwrap();
        assert!(claimed);
        let pid = crate::identity::Identity::from_word(word).unwrap().pid();
        let died = Err(AttachError::CreatorDied { pid });
        assert_eq!(open(r, None).map(|_| ()), died);
        assert_eq!(
            open(r, Some(Deadline::after(Duration::from_secs(60)))).map(|_| ()),
            died
        );
        assert_eq!(create(r).map(|_| ()), Err(InitError::AlreadyInitialized));
    });
}

/// A creator that publishes and then dies (a process that made a queue
/// and exited) while an attacher waits: the attacher may see the death
/// before the publish reaches it, but must attach, never report the
/// creator dead mid-init (`check_creator` looks at the state again after
/// the liveness check; without that second look this model fails).
#[test]
fn creator_dying_after_publish_is_not_reported_dead() {
    ::loom::model(|| {
        let r = region();
        let creator = thread::spawn(move || {
            create(r).map(|_| ()).unwrap();
            crate::sync::loom_die();
        });
        match open(r, Some(Deadline::after(Duration::from_secs(60)))) {
            Ok(p) => check_whole(&p),
            Err(e) => panic!("attach after a publish failed: {e:?}"),
        }
        creator.join().unwrap();
    });
}

/// An attacher that waits (a deadline that, under loom's frozen clock,
/// never passes) for a creator that publishes: it spins, then sleeps on
/// the state word, and the creator's wake-up must reach it (a lost one is
/// a loom deadlock).
#[test]
fn waiting_attacher_is_woken_by_publish() {
    ::loom::model(|| {
        let r = region();
        let creator = thread::spawn(move || create(r).map(|_| ()));
        let p = open(r, Some(Deadline::after(Duration::from_secs(60)))).unwrap();
        check_whole(&p);
        creator.join().unwrap().unwrap();
    });
}
