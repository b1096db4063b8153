//! What a child that `Process` forked runs before its job: the hooks of the
//! modules that keep per-process state a forked child must renew.
//!
//! A module with such state names its hook in [`IN_CHILD`]; the fork start
//! method (`process::fork`) calls [`run_in_child`] and knows nothing of the
//! modules behind it. A hook runs in the child right after the fork, on the
//! child's only thread, before any of the job's code: it must not block on
//! anything another thread of the parent could have held at the fork.

/// The hooks, in the order they run. Each is told the parent's identity
/// word ([`Identity::to_word`](multiproc_core::identity::Identity::to_word)),
/// taken in the parent before the fork.
const IN_CHILD: &[fn(u64)] = &[
    // Handles counted under the parent pass to the child (the fork
    // hand-over of queues, pipes and sync handles).
    crate::segment::after_fork_in_child,
];

/// Runs every hook of [`IN_CHILD`] in a child `Process` forked, with its
/// parent's identity word.
pub(crate) fn run_in_child(parent_identity: u64) {
    for hook in IN_CHILD {
        hook(parent_identity);
    }
}
