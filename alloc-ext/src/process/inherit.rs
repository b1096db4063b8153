//! [`Inherit`]: handles given to a forked child explicitly, through
//! [`Process::with`](super::Process::with).

/// Something that holds queue or pipe handles, which a forked child counts
/// in its own name before its function runs ([`Process::with`]).
///
/// Implemented for every handle of this crate that is counted per process
/// (queue [`Sender`](crate::queue::Sender) and
/// [`Receiver`](crate::queue::Receiver), [`SimpleQueue`](crate::SimpleQueue),
/// [`JoinableQueue`](crate::JoinableQueue), the SPSC channel's ends,
/// [`Connection`](crate::Connection)), and for the containers and tuples
/// that hold them. Implement it for your own argument type by calling
/// `inherit` on each handle it holds; a handle left out keeps the window
/// of a captured handle (see [`Process::with`]), nothing worse.
///
/// # Why
///
/// A queue or pipe handle counts, in its segment's peer table, as held by
/// one process, so that the other side learns when every holder is gone
/// (`Disconnected`), even when a holder was killed. A handle that a closure
/// *captured* and took into a forked child cannot be seen by the parent:
/// the parent forgets its copy of the closure without running any
/// destructor (the only sound choice: see the module docs of
/// [`process`](crate::process)), so the handle stays counted under the parent until
/// the child first uses it. A child killed before that first use leaves the
/// count with the parent, and the other side is not told until the parent
/// exits.
///
/// A handle passed as the *argument* of [`Process::with`] has no such
/// window: the child counts it in its own name before the function runs,
/// and withdraws its parent's count, so a child killed at any later moment
/// (even before it used the handle) takes the count with it.
///
/// # Examples
///
/// ```
/// use multiproc::{Process, Queue};
/// use multiproc::queue::RecvError;
///
/// # multiproc::init();
/// let (tx, rx) = Queue::<u64>::new(16).channel()?;
/// let child = Process::with(tx, |tx| {
///     tx.send(42).unwrap();
/// })
/// .start()?;
/// assert_eq!(rx.recv(), Ok(42));
/// child.join()?;
/// // The only sender went with the child: the queue is disconnected.
/// assert_eq!(rx.recv(), Err(RecvError::Disconnected));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// [`Process::with`]: super::Process::with
pub trait Inherit {
    /// Counts every handle in `self` under the calling process (a no-op
    /// for a handle already counted here).
    fn inherit(&self);
}

impl Inherit for () {
    fn inherit(&self) {}
}

impl<T: Inherit + ?Sized> Inherit for Box<T> {
    fn inherit(&self) {
        (**self).inherit();
    }
}

impl<T: Inherit> Inherit for Option<T> {
    fn inherit(&self) {
        if let Some(t) = self {
            t.inherit();
        }
    }
}

impl<T: Inherit> Inherit for [T] {
    fn inherit(&self) {
        self.iter().for_each(Inherit::inherit);
    }
}

impl<T: Inherit, const N: usize> Inherit for [T; N] {
    fn inherit(&self) {
        self.iter().for_each(Inherit::inherit);
    }
}

impl<T: Inherit> Inherit for Vec<T> {
    fn inherit(&self) {
        self.iter().for_each(Inherit::inherit);
    }
}

macro_rules! tuples {
    ($(($($t:ident),+)),+ $(,)?) => {$(
        impl<$($t: Inherit),+> Inherit for ($($t,)+) {
            #[allow(non_snake_case)]
            fn inherit(&self) {
                let ($($t,)+) = self;
                $($t.inherit();)+
            }
        }
    )+};
}

tuples!(
    (A),
    (A, B),
    (A, B, C),
    (A, B, C, D),
    (A, B, C, D, E),
    (A, B, C, D, E, F),
    (A, B, C, D, E, F, G),
    (A, B, C, D, E, F, G, H),
);
