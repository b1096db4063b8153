//! loom models of the role word: claim, release, hand-over and take-over
//! races. Threads stand for processes, `sync::loom_die` for a `kill -9`,
//! `sync::loom_reuse_pid` for a new process that got a dead one's pid.
//! Run with
//! `RUSTFLAGS="--cfg multiproc_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p multiproc-core --release --lib loom_claim`.

extern crate std;

use super::*;
use crate::sync::{current_pid, UnsafeCell};
use ::loom::sync::Arc;
use ::loom::thread;

/// A role word and what its holder works on; loom checks `data` for races
/// (two holders at once, or a holder's writes not reaching the next one).
struct Shared {
    role: RoleWord,
    data: UnsafeCell<u32>,
}

// SAFETY: `data` is accessed only by the role's holder.
unsafe impl Sync for Shared {}

fn shared() -> Arc<Shared> {
    Arc::new(Shared {
        role: RoleWord::new(),
        data: UnsafeCell::new(0),
    })
}

impl Shared {
    /// The holder's work: adds one to `data`.
    fn work(&self) {
        // SAFETY: called by the role's holder only.
        self.data.with_mut(|p| unsafe { *p += 1 });
    }
}

/// Two processes claim a fresh role at once: exactly one gets it, the
/// other is told the winner's pid; the winner releases, and the loser's
/// next claim gets the role fresh and sees the winner's work.
#[test]
fn two_claimers_then_release() {
    ::loom::model(|| {
        let s = shared();
        let claimer = |s: &Shared| match s.role.claim() {
            Ok(c) => {
                assert_eq!(c, Claimed::Fresh);
                s.work();
                assert!(s.role.release(RoleWord::holder_here()));
                Ok(())
            }
            Err(e) => Err(e.pid),
        };
        let s2 = s.clone();
        let t = thread::spawn(move || (current_pid(), claimer(&s2)));
        let mine = claimer(&s);
        let (them, theirs) = t.join().unwrap();
        match (mine, theirs) {
            (Ok(()), Err(pid)) => assert_eq!(pid, current_pid()),
            (Err(pid), Ok(())) => assert_eq!(pid, them),
            // Both may win in turn (the first released before the second
            // claimed), never both at once (loom sees the race on `data`).
            (Ok(()), Ok(())) => {}
            (Err(_), Err(_)) => panic!("nobody got a free role"),
        }
        // SAFETY: joined: no concurrent access.
        let done = s.data.with(|p| unsafe { *p });
        assert_eq!(done, 1 + u32::from(mine.is_ok() && theirs.is_ok()));
        assert!(s.role.is_closed());
    });
}

/// The holder works and releases while a claimer retries: the claim
/// succeeds only after the release, fresh, and the claimer sees the
/// holder's work (the release's Release pairs with the claim's Acquire).
#[test]
fn release_publishes_to_the_next_claimer() {
    ::loom::model(|| {
        let s = shared();
        assert_eq!(s.role.claim(), Ok(Claimed::Fresh));
        let holder = RoleWord::holder_here();
        let s2 = s.clone();
        let t = thread::spawn(move || loop {
            match s2.role.claim() {
                Ok(c) => {
                    assert_eq!(c, Claimed::Fresh);
                    // SAFETY: this thread holds the role now.
                    assert_eq!(s2.data.with(|p| unsafe { *p }), 1);
                    s2.work();
                    return;
                }
                Err(_) => thread::yield_now(),
            }
        });
        s.work();
        assert!(s.role.release(holder));
        t.join().unwrap();
        // SAFETY: joined.
        assert_eq!(s.data.with(|p| unsafe { *p }), 2);
    });
}

/// A holder dies without releasing; two claimers race for its role:
/// exactly one claims it from the dead (reporting the dead pid), the other
/// finds it held by that live winner, and no claim succeeds while the
/// holder still runs. The holder is the model's main thread: it claims
/// before the claimers start and dies while they try; a claimer that
/// finds it alive tries once more after the death (told by a loom
/// condvar, so no claimer spins).
#[test]
fn dead_holder_is_claimed_once() {
    ::loom::model(|| {
        let s = shared();
        s.role.claim().unwrap();
        let first = current_pid();
        let died = Arc::new((
            ::loom::sync::Mutex::new(false),
            ::loom::sync::Condvar::new(),
        ));
        let claimer =
            move |s: &Shared, died: &(::loom::sync::Mutex<bool>, ::loom::sync::Condvar)| {
                let mut r = s.role.claim();
                if r == Err(RoleTaken { pid: first }) {
                    let mut dead = died.0.lock().unwrap();
                    while !*dead {
                        dead = died.1.wait(dead).unwrap();
                    }
                    drop(dead);
                    r = s.role.claim();
                }
                match r {
                    Ok(Claimed::FromDead(pid)) => {
                        s.work();
                        Ok(pid)
                    }
                    Ok(Claimed::Fresh) => panic!("a role held until death claimed fresh"),
                    Err(RoleTaken { pid }) => Err(pid),
                }
            };
        let claimers: std::vec::Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                let died = died.clone();
                thread::spawn(move || (current_pid(), claimer(&s, &died)))
            })
            .collect();
        s.work();
        crate::sync::loom_die();
        *died.0.lock().unwrap() = true;
        died.1.notify_all();
        let mut got: std::vec::Vec<_> = claimers.into_iter().map(|t| t.join().unwrap()).collect();
        got.sort_by_key(|(_, r)| r.is_err());
        match got[..] {
            [(winner, Ok(pid)), (_, Err(found))] => assert_eq!((pid, found), (first, winner)),
            _ => panic!("not exactly one claim from the dead: {got:?}"),
        }
        // SAFETY: all joined.
        assert_eq!(s.data.with(|p| unsafe { *p }), 2);
    });
}

/// A holder dies without releasing, and a new process gets its pid: the
/// role is not held by "a live process" (the identity says the holder is
/// dead), so the reuser claims it from the dead, racing a third process
/// that may claim it first; exactly one of the two gets it.
#[test]
fn reused_pid_holder_is_dead() {
    ::loom::model(|| {
        let s = shared();
        let s1 = s.clone();
        let dead = thread::spawn(move || {
            s1.role.claim().unwrap();
            s1.work();
            crate::sync::loom_die();
            current_pid()
        })
        .join()
        .unwrap();
        let s2 = s.clone();
        let t = thread::spawn(move || {
            let r = s2.role.claim();
            if r.is_ok() {
                s2.work();
            }
            (current_pid(), r)
        });
        crate::sync::loom_reuse_pid();
        assert_eq!(current_pid(), dead);
        let mine = s.role.claim();
        if mine.is_ok() {
            s.work();
        }
        let (them, theirs) = t.join().unwrap();
        let from_dead = Ok(Claimed::FromDead(dead));
        match (mine, theirs) {
            (m, Err(e)) => assert_eq!((m, e.pid), (from_dead, dead)),
            (Err(e), t) => assert_eq!((t, e.pid), (from_dead, them)),
            _ => panic!("two claims of one role: {mine:?} {theirs:?}"),
        }
        // SAFETY: all joined.
        assert_eq!(s.data.with(|p| unsafe { *p }), 2);
    });
}

/// The holder works, hands the role on and gives its handle up; a taker
/// retries `take_over` until it succeeds and must see the holder's work
/// (hand_over's Release pairs with take_over's Acquire). Meanwhile the
/// role is never free: a claim fails, the old handle's release changes
/// nothing, and a second take-over fails.
#[test]
fn hand_over_publishes_to_the_taker() {
    ::loom::model(|| {
        let s = shared();
        s.role.claim().unwrap();
        let old = RoleWord::holder_here();
        let me = current_pid();
        let s2 = s.clone();
        let t = thread::spawn(move || {
            while !s2.role.take_over(me) {
                assert!(s2.role.claim().is_err(), "a role in transit is held");
                thread::yield_now();
            }
            // SAFETY: this thread holds the role now.
            assert_eq!(s2.data.with(|p| unsafe { *p }), 1);
            s2.work();
            assert!(!s2.role.take_over(me), "taken over twice");
            current_pid()
        });
        s.work();
        assert_eq!(s.role.hand_over(), Some(me));
        // The handle is given up: its release (as a drop would) is a no-op.
        assert!(!s.role.release(old));
        assert!(s.role.claim().is_err());
        let taker = t.join().unwrap();
        assert_eq!(s.role.peer(), Peer::Alive(taker));
        // SAFETY: joined.
        assert_eq!(s.data.with(|p| unsafe { *p }), 2);
    });
}
