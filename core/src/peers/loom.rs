use super::*;
use crate::sync::loom_die;
use crate::test_util::leak;
use ::loom::thread;

fn table(slots: u64) -> Peers<'static> {
    let mem = leak(Peers::memory_size(slots).unwrap());
    Peers::create(Region::from_mut_slice(mem), slots).unwrap()
}

/// Two threads of one process (one identity) register and unregister
/// concurrently, while a slot is released and claimed again: the count
/// is never wrong, whichever slots they end up in.
#[test]
fn peers_same_process_two_threads() {
    ::loom::model(|| {
        let p = table(2);
        let id = Identity::new(7, Some(1)).unwrap();
        p.add(id, Side::Sender, 1).unwrap();
        let t = thread::spawn(move || {
            p.add(id, Side::Sender, 1).unwrap();
            assert!(p.remove(id, Side::Sender, 1));
        });
        assert!(p.remove(id, Side::Sender, 1));
        p.add(id, Side::Receiver, 1).unwrap();
        t.join().unwrap();
        assert_eq!(p.count(id, Side::Sender), 0);
        assert_eq!(p.count(id, Side::Receiver), 1);
        assert!(p.remove(id, Side::Receiver, 1));
        assert!(!p.any(Side::Receiver));
    });
}

/// Two processes race for slots while one frees its last count: no
/// count is lost or doubled, and a freed slot can be taken by the other.
#[test]
fn peers_two_processes_share_slots() {
    ::loom::model(|| {
        let p = table(2);
        let a = Identity::new(1, Some(1)).unwrap();
        let b = Identity::new(2, Some(1)).unwrap();
        p.add(a, Side::Sender, 1).unwrap();
        let t = thread::spawn(move || {
            p.add(b, Side::Receiver, 1).unwrap();
            p.add(b, Side::Sender, 1).unwrap();
        });
        assert!(p.remove(a, Side::Sender, 1));
        t.join().unwrap();
        assert_eq!(p.count(a, Side::Sender), 0);
        assert_eq!(p.count(b, Side::Sender), 1);
        assert_eq!(p.count(b, Side::Receiver), 1);
    });
}

/// Where a process is killed in the slot protocol.
#[derive(Clone, Copy, Debug)]
enum Kill {
    /// After claiming the owner word, before its counts.
    AfterOwner,
    /// Holding counts.
    Holding,
    /// After releasing its counts (state V), before clearing the owner.
    AfterRelease,
    /// After a complete add and remove.
    AfterAll,
}

/// A process (thread) killed at each step of the protocol, on a
/// one-slot table, while another claims: the other either finds the
/// slot held by a live process (`Full`) or gets it; once the dead one
/// is known dead, the slot is always reclaimable and the counts exact.
#[test]
fn peers_killed_at_each_step() {
    for kill in [
        Kill::AfterOwner,
        Kill::Holding,
        Kill::AfterRelease,
        Kill::AfterAll,
    ] {
        ::loom::model(move || {
            let p = table(1);
            let d = thread::spawn(move || {
                let me = Identity::current();
                let s = p.slot(0);
                match kill {
                    Kill::AfterOwner => {
                        let _ = s.owner.compare_exchange(
                            0,
                            me.to_word(),
                            Ordering::Acquire,
                            Ordering::Relaxed,
                        );
                    }
                    Kill::Holding => {
                        let _ = p.add(me, Side::Sender, 1);
                    }
                    Kill::AfterRelease => {
                        if p.add(me, Side::Sender, 1).is_ok() {
                            let st = s.state.load(Ordering::Acquire);
                            let _ = s.state.compare_exchange(
                                st,
                                VACANT | st & (GEN_MASK << GEN_SHIFT),
                                Ordering::AcqRel,
                                Ordering::Relaxed,
                            );
                        }
                    }
                    Kill::AfterAll => {
                        if p.add(me, Side::Sender, 1).is_ok() {
                            assert!(p.remove(me, Side::Sender, 1));
                        }
                    }
                }
                loom_die();
            });
            let me = Identity::current();
            let first = p.add(me, Side::Receiver, 1);
            d.join().unwrap();
            if first.is_err() {
                p.add(me, Side::Receiver, 1).unwrap();
            }
            assert_eq!(p.count(me, Side::Receiver), 1);
            assert_eq!(p.live(Side::Sender), 0);
            assert_eq!(p.live(Side::Receiver), 1);
        });
    }
}

/// A dead holder's slot is reclaimed and claimed by N while another
/// process scans (`live`): the scan must never take N's live counts
/// for the dead owner's. This is the model that fails when the state
/// word is loaded Relaxed in `load` (the scan then may see N's counts
/// with the dead owner's word) or the claim's CAS is Relaxed.
#[test]
fn peers_reclaim_races_a_scan() {
    ::loom::model(|| {
        let p = table(1);
        let d = thread::spawn(move || {
            p.add(Identity::current(), Side::Sender, 1).unwrap();
            loom_die();
        });
        d.join().unwrap();
        let scan = thread::spawn(move || {
            let _ = p.live(Side::Sender);
        });
        let me = Identity::current();
        p.add(me, Side::Sender, 1).unwrap();
        scan.join().unwrap();
        assert_eq!(p.count(me, Side::Sender), 1);
        assert_eq!(p.live(Side::Sender), 1);
    });
}

/// A holder of a task dies; `wait_tasks` reports it lost rather than
/// waiting, while another process marks its own task done.
#[test]
fn peers_task_holder_dies() {
    ::loom::model(|| {
        let p = table(2);
        p.task_add();
        p.task_add();
        let d = thread::spawn(move || {
            let me = Identity::current();
            p.add(me, Side::Receiver, 1).unwrap();
            assert!(p.task_taken(me));
            loom_die();
        });
        let me = Identity::current();
        p.add(me, Side::Receiver, 1).unwrap();
        assert!(p.task_taken(me));
        p.task_done(me).unwrap();
        d.join().unwrap();
        assert!(matches!(
            p.wait_tasks(None),
            Err(TasksError::Lost { tasks: 1, .. })
        ));
        p.task_done(me).unwrap();
        assert_eq!(p.wait_tasks(None), Ok(()));
    });
}
