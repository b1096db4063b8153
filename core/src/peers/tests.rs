extern crate std;
use super::*;
use crate::test_util::{buf, bytes};

/// An identity no process has (its pid is above every pid_max).
fn dead(n: u32) -> Identity {
    Identity::new((1 << 22) - n, Some(5)).unwrap()
}

fn table(b: &mut [crate::test_util::Line], slots: u64) -> Peers<'_> {
    Peers::create(Region::from_mut_slice(bytes(b)), slots).unwrap()
}

#[test]
fn add_remove_count_and_free() {
    let mut b = buf(Peers::memory_size(2).unwrap());
    let p = table(&mut b, 2);
    let me = Identity::current();
    p.add(me, Side::Sender, 1).unwrap();
    p.add(me, Side::Receiver, 3).unwrap();
    assert_eq!(p.count(me, Side::Sender), 1);
    assert_eq!(p.count(me, Side::Receiver), 3);
    assert_eq!((p.live(Side::Sender), p.live(Side::Receiver)), (1, 3));
    assert!(p.remove(me, Side::Sender, 1));
    assert!(!p.remove(me, Side::Sender, 1));
    assert!(p.any(Side::Receiver) && !p.any(Side::Sender));
    assert!(p.remove(me, Side::Receiver, 5));
    for i in 0..2 {
        assert_eq!(p.slot(i).owner.load(Ordering::Relaxed), 0);
        assert!(vacant(p.slot(i).state.load(Ordering::Relaxed)));
    }
    // A second claim of the slot gets the next generation.
    p.add(me, Side::Sender, 1).unwrap();
    assert_eq!(gen_of(p.slot(0).state.load(Ordering::Relaxed)), 2);
}

#[test]
fn full_table_reclaims_dead_slots_and_errors() {
    let mut b = buf(Peers::memory_size(2).unwrap());
    let p = table(&mut b, 2);
    let me = Identity::current();
    let init = crate::identity::of_pid(1).unwrap();
    p.add(dead(1), Side::Sender, 1).unwrap();
    p.add(init, Side::Sender, 1).unwrap(); // alive
    assert_eq!(p.count(dead(1), Side::Sender), 1);
    p.add(me, Side::Receiver, 1).unwrap(); // takes the dead slot
    assert_eq!(p.count(dead(1), Side::Sender), 0);
    let other = Identity::new(init.pid(), Some(7)).unwrap(); // init's pid, reused
    assert_eq!(
        p.add(other, Side::Sender, 1),
        Err(PeersError::Full { slots: 2 })
    );
    assert_eq!(
        p.add(me, Side::Receiver, u16::MAX),
        Err(PeersError::Overflow)
    );
    assert!(std::format!("{}", PeersError::Full { slots: 2 }).starts_with("peer table full"));
}

#[test]
fn a_reused_pid_is_dead() {
    let mut b = buf(Peers::memory_size(4).unwrap());
    let p = table(&mut b, 4);
    // This process's pid with another start time: a process that had
    // this pid before.
    let me = Identity::current();
    let earlier = Identity::new(me.pid(), Some(me.start_ticks().unwrap() - 1)).unwrap();
    p.add(earlier, Side::Sender, 1).unwrap();
    let mut w = 0;
    assert!(!p.any_alive(Side::Sender, &mut w));
    assert!(!p.any(Side::Sender));
}

#[test]
fn live_skips_and_frees_dead() {
    let mut b = buf(Peers::memory_size(4).unwrap());
    let p = table(&mut b, 4);
    p.add(dead(9), Side::Sender, 4).unwrap();
    assert!(p.any(Side::Sender));
    assert_eq!(p.live(Side::Sender), 0);
    assert!(!p.any(Side::Sender));
    // A slot claimed by a process killed before its counts: freed.
    p.slot(1).owner.store(dead(3).to_word(), Ordering::Relaxed);
    assert_eq!(p.live(Side::Sender), 0);
    assert_eq!(p.slot(1).owner.load(Ordering::Relaxed), 0);
}

#[test]
fn any_alive_counts_first_and_keeps_a_witness() {
    let mut b = buf(Peers::memory_size(4).unwrap());
    let p = table(&mut b, 4);
    let mut w = 0;
    assert!(!p.any_alive(Side::Sender, &mut w));
    p.add(dead(1), Side::Sender, 1).unwrap();
    let init = crate::identity::of_pid(1).unwrap();
    p.add(init, Side::Sender, 1).unwrap();
    p.add(Identity::current(), Side::Receiver, 1).unwrap();
    assert!(p.any_alive(Side::Sender, &mut w));
    assert_eq!(w, 2, "init's slot is the witness");
    assert_eq!(
        p.count(dead(1), Side::Sender),
        0,
        "the dead one was released"
    );
    assert!(p.any_alive(Side::Sender, &mut w));
    assert!(p.remove(init, Side::Sender, 1));
    assert!(!p.any_alive(Side::Sender, &mut w));
    assert!(p.any_alive(Side::Receiver, &mut w));
}

#[test]
fn tasks_count_wait_and_loss() {
    let mut b = buf(Peers::memory_size(4).unwrap());
    let p = table(&mut b, 4);
    let me = Identity::current();
    assert_eq!(p.task_done(me), Err(TooManyTaskDone));
    assert_eq!(p.wait_tasks(None), Ok(()));
    p.task_add();
    p.task_add();
    assert_eq!(
        p.wait_tasks(Some(Deadline::after(Duration::from_millis(5)))),
        Err(TasksError::TimedOut)
    );
    p.task_done(me).unwrap();
    p.task_cancel();
    assert_eq!(p.unfinished(), 0);
    assert_eq!(p.wait_tasks(Some(Deadline::after(Duration::ZERO))), Ok(()));
    // A dead process took two tasks: join reports them.
    for _ in 0..3 {
        p.task_add();
    }
    p.add(dead(2), Side::Receiver, 1).unwrap();
    assert!(p.task_taken(dead(2)));
    assert!(p.task_taken(dead(2)));
    p.add(me, Side::Receiver, 1).unwrap();
    assert!(p.task_taken(me));
    assert_eq!(
        p.wait_tasks(None),
        Err(TasksError::Lost {
            pid: dead(2).pid(),
            tasks: 2
        })
    );
    // Our own task first, then the lost ones are acknowledged.
    p.task_done(me).unwrap();
    assert_eq!(p.count(me, Side::Receiver), 1);
    assert_eq!(p.lost(), 2);
    p.task_done(me).unwrap();
    assert_eq!(p.lost(), 1);
    p.task_done(me).unwrap();
    assert_eq!((p.lost(), p.unfinished()), (0, 0));
    assert_eq!(p.wait_tasks(None), Ok(()));
}

#[test]
fn task_done_in_another_process_lowers_a_holder_that_keeps_a_count() {
    let mut b = buf(Peers::memory_size(4).unwrap());
    let p = table(&mut b, 4);
    let init = crate::identity::of_pid(1).unwrap();
    p.task_add();
    p.add(init, Side::Receiver, 1).unwrap();
    assert!(p.task_taken(init));
    p.task_done(Identity::current()).unwrap();
    assert_eq!(p.unfinished(), 0);
    assert_eq!(p.count(init, Side::Receiver), 1);
    assert_eq!(
        field(p.slot(0).state.load(Ordering::Relaxed), TASK_SHIFT),
        0
    );
}

#[test]
fn remove_pid_names_the_live_holder() {
    let mut b = buf(Peers::memory_size(2).unwrap());
    let p = table(&mut b, 2);
    let me = Identity::current();
    p.add(me, Side::Sender, 2).unwrap();
    assert!(p.remove_pid(me.pid(), Side::Sender, 1));
    assert_eq!(p.count(me, Side::Sender), 1);
    assert!(!p.remove_pid(me.pid() + 1, Side::Sender, 1));
}

#[test]
fn attach_validates_and_sizes() {
    assert!(Peers::memory_size(0).is_none());
    assert!(Peers::memory_size(MAX_SLOTS + 1).is_none());
    let mut b = buf(Peers::memory_size(3).unwrap());
    let r = Region::from_mut_slice(bytes(&mut b));
    assert_eq!(Peers::attach(r).unwrap_err(), AttachError::NotReady);
    assert!(matches!(
        Peers::create(r, 0),
        Err(InitError::InvalidCapacity { .. })
    ));
    let p = Peers::create(r, 3).unwrap();
    assert_eq!(p.total_size() as usize, Peers::memory_size(3).unwrap());
    let q = Peers::attach_timeout(r, Duration::ZERO).unwrap();
    assert_eq!(q.slots(), 3);
    // Docs: 16 bytes a slot.
    assert_eq!(
        Peers::memory_size(DEFAULT_SLOTS).unwrap() - Peers::memory_size(1).unwrap(),
        16 * (DEFAULT_SLOTS as usize - 1)
    );
}
