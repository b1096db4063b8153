//! loom models of the std layer's handle counting
//! (`alloc-ext/src/segment/handle.rs`, `Local::adopt` and
//! `Local::release`) over the peer table it counts in.
//!
//! loom runs on this crate only, so these models restate the std layer's
//! steps (the order of its `Peers` calls) and run them over the real
//! `Peers`: they check the protocol, not the std code itself. Keep them in
//! step with `Local` when its adopt or release changes. Threads stand for
//! processes; identities are written out (`Identity::new`), as in the
//! peer table's own models. Run with
//! `RUSTFLAGS="--cfg multiproc_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p multiproc-core --release --lib loom_handles`.

extern crate std;

use super::*;
use crate::sync::{AtomicU32, Ordering};
use ::loom::sync::Arc;
use ::loom::thread;

fn table(slots: u64) -> Peers<'static> {
    let mem = crate::test_util::leak(Peers::memory_size(slots).unwrap());
    Peers::create(Region::from_mut_slice(mem), slots).unwrap()
}

/// `Local::adopt` in a `Process` fork child: the child's first touch of a
/// sender handle counted under its parent counts it under the child
/// (`add(me)`), then withdraws the parent's count (`remove(parent)`).
fn adopt(p: Peers<'static>, me: Identity, parent: Identity) {
    p.add(me, Side::Sender, 1).unwrap();
    assert!(p.remove(parent, Side::Sender, 1));
}

/// `Local::release`: uncount, then tell whether it was the last sender
/// counted anywhere (the caller then wakes the receivers). With `fenced`,
/// a `SeqCst` fence between the two, as the std layer's release has (see
/// `last_of_two_releases_is_seen`; `fenced: false` is the weakened form).
fn release(p: Peers<'static>, me: Identity, fenced: bool) -> bool {
    assert!(p.remove(me, Side::Sender, 1));
    if fenced {
        crate::sync::fence(Ordering::SeqCst);
    }
    !p.any(Side::Sender)
}

/// The parent counts a sender handle and hands it to a fork child (the
/// parent's copy is forgotten); the child (the model's main thread)
/// adopts it, uses it, and drops it. A receiver looking all along (`any`, the cheap question of a
/// blocked receive) never finds the sender side uncounted before the
/// child's drop began: no instant when the handle is counted nowhere.
#[test]
fn adopted_handle_is_always_counted() {
    ::loom::model(|| {
        let p = table(2);
        let parent = Identity::new(1, Some(1)).unwrap();
        let child = Identity::new(2, Some(1)).unwrap();
        p.add(parent, Side::Sender, 1).unwrap();
        // 1 once the child's drop began (set before its release).
        let dropping = Arc::new(AtomicU32::new(0));
        let d = dropping.clone();
        let receiver = thread::spawn(move || {
            for _ in 0..2 {
                if !p.any(Side::Sender) {
                    // SeqCst: pairs with the child's store, made before
                    // the release that alone can make the count zero.
                    assert_eq!(
                        d.load(Ordering::SeqCst),
                        1,
                        "the sender side was counted nowhere while the child held it"
                    );
                }
                thread::yield_now();
            }
        });
        adopt(p, child, parent);
        dropping.store(1, Ordering::SeqCst);
        assert!(
            release(p, child, false),
            "the last sender's drop did not see it"
        );
        receiver.join().unwrap();
        assert_eq!(p.total(Side::Sender), 0);
    });
}

/// Two processes each hold one sender handle and drop it at once: the
/// counts end at zero, and at least one of the drops finds itself the
/// last (so someone wakes the receivers).
///
/// Only with a `SeqCst` fence between the uncount and the look: each drop
/// writes its own slot (an AcqRel CAS) and then reads the other's
/// (Acquire loads), the store-buffering shape, where release/acquire lets
/// both reads miss the other's write. Without the fence, that is what loom
/// finds: neither drop sees itself the last, and the receivers are not
/// woken; a blocked receiver then notices only at its next liveness check
/// (`Segment::side_alive`, once per liveness slice). The std layer's
/// `Local::release` (alloc-ext `segment/handle.rs`) has the fence.
#[test]
fn last_of_two_releases_is_seen() {
    ::loom::model(|| {
        let p = table(2);
        let a = Identity::new(1, Some(1)).unwrap();
        let b = Identity::new(2, Some(1)).unwrap();
        p.add(a, Side::Sender, 1).unwrap();
        p.add(b, Side::Sender, 1).unwrap();
        let t = thread::spawn(move || release(p, b, true));
        let mine = release(p, a, true);
        let theirs = t.join().unwrap();
        assert_eq!(p.total(Side::Sender), 0);
        assert!(mine || theirs, "neither drop saw itself the last");
    });
}
