use super::word::START_MASK;
use super::*;

#[test]
fn packs_and_unpacks() {
    let id = Identity::new(4242, Some(123_456)).unwrap();
    assert_eq!(id.pid(), 4242);
    assert_eq!(id.start_ticks(), Some(123_456));
    assert_eq!(Identity::from_word(id.to_word()), Some(id));
    assert_eq!(id.to_word() & !IDENTITY_MASK, 0);
    assert_eq!(Identity::from_word(id.to_word() | 3 << 62), Some(id));
    assert_eq!(Identity::new(0, Some(1)), None);
    assert_eq!(Identity::new(1 << 22, Some(1)), None);
    assert_eq!(Identity::from_word(0), None);
    let unknown = Identity::new(7, None).unwrap();
    assert_eq!(unknown.start_ticks(), None);
}

#[test]
fn self_is_alive_and_a_reused_pid_is_not() {
    let me = Identity::current();
    assert!(me.is_alive());
    assert_eq!(of_pid(me.pid()), Some(me));
    // The same pid with another start time: a process that had this pid
    // before (or will after) is not this one.
    let t = me.start_ticks().unwrap();
    let earlier = Identity::new(me.pid(), Some(t.wrapping_sub(1) & START_MASK)).unwrap();
    let later = Identity::new(me.pid(), Some(t + 1)).unwrap();
    assert!(!earlier.is_alive());
    assert!(!later.is_alive());
    assert!(!word_alive(0));
    assert!(reuse_proof());
    assert!(pid_namespace().is_some());
}

#[test]
fn a_fork_child_has_its_own_identity_not_the_cached_parents() {
    let parent = Identity::current();
    // SAFETY: the child only reads /proc, compares and `_exit`s; the
    // test harness's other threads take no lock it needs here (no
    // allocation, no stdio).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let me = Identity::current();
        // SAFETY: getpid has no preconditions.
        let real = unsafe { libc::getpid() } as u32;
        let ok = me.pid() == real && me != parent && of_pid(real) == Some(me);
        // SAFETY: leaves the forked child at once.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    assert!(pid > 0);
    let mut status = 0;
    // SAFETY: `pid` is our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    assert_eq!(Identity::current(), parent);
}

#[test]
fn fork_generation_differs_in_a_child_and_a_grandchild() {
    let parent = fork_generation().expect("the atfork handler registers");
    assert_eq!(fork_generation(), Some(parent));
    // SAFETY: the child only forks, waits and `_exit`s (no allocation,
    // no lock), as does the grandchild.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let child = fork_generation();
        let mut ok = child.is_some_and(|g| g != parent);
        // SAFETY: as above.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let grand = fork_generation();
            let fine = grand.is_some_and(|g| g != parent && Some(g) != child);
            // SAFETY: leaves the forked grandchild at once.
            unsafe { libc::_exit(if fine { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: `pid` is our child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        ok &= pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
        ok &= fork_generation() == child;
        // SAFETY: leaves the forked child at once.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    assert!(pid > 0);
    let mut status = 0;
    // SAFETY: `pid` is our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    assert_eq!(fork_generation(), Some(parent));
}

#[test]
fn a_killed_child_is_dead_as_a_zombie_and_once_reaped() {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array of two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child only calls `read` and `_exit`, both
    // async-signal-safe.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let mut b = 0u8;
        // SAFETY: blocks until the parent kills us; `b` is writable.
        unsafe { libc::read(fds[0], (&mut b as *mut u8).cast(), 1) };
        // SAFETY: leaves the forked child at once.
        unsafe { libc::_exit(0) };
    }
    assert!(pid > 0);
    let child = of_pid(pid as u32).expect("a blocked child runs");
    assert!(child.is_alive());
    assert_ne!(child, Identity::current());
    // SAFETY: `pid` is our child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    // Killed, not reaped: a zombie, dead here.
    while child.is_alive() {
        std::thread::yield_now();
    }
    let mut status = 0;
    // SAFETY: `pid` is our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(!child.is_alive());
    // SAFETY: both descriptors are ours.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
}
