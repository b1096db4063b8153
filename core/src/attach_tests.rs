//! Attaching to a region of another kind: every kind refuses every other
//! kind's region with [`AttachError::KindMismatch`].
//!
//! These tests name every kind, so they live here rather than in the kinds'
//! own test modules, which would otherwise import each other in circles.

use crate::barrier::Barrier;
use crate::bytering::ByteRing;
use crate::condvar::Condvar;
use crate::event::Event;
use crate::mpmc::MpmcRing;
use crate::msgqueue::MsgQueue;
use crate::mutex::Mutex;
use crate::peers::Peers;
use crate::region::{AttachError, Kind, Region};
use crate::semaphore::Semaphore;
use crate::spsc::SpscRing;
use crate::test_util::{buf, bytes};
use crate::value::{Array, AtomicValue, Value};

/// One kind: how to make it in a region, and how to attach to one.
struct Case {
    kind: Kind,
    create: fn(Region<'_>),
    attach: fn(Region<'_>) -> Result<(), AttachError>,
}

macro_rules! case {
    ($kind:ident, $ty:ty, |$r:ident| $create:expr) => {
        Case {
            kind: Kind::$kind,
            create: |$r| {
                $create.unwrap();
            },
            attach: |r| <$ty>::attach(r).map(drop),
        }
    };
}

fn cases() -> [Case; 13] {
    [
        case!(Spsc, SpscRing<u64>, |r| SpscRing::<u64>::create(r, 4)),
        case!(Mpmc, MpmcRing<u64>, |r| MpmcRing::<u64>::create(r, 4)),
        case!(ByteRing, ByteRing, |r| ByteRing::create(r, 1024, 64)),
        case!(Mutex, Mutex<u64>, |r| Mutex::<u64>::create(r, 0)),
        case!(Condvar, Condvar, |r| Condvar::create(r)),
        case!(Semaphore, Semaphore, |r| Semaphore::create(r, 1)),
        case!(Event, Event, |r| Event::create(r)),
        case!(Barrier, Barrier, |r| Barrier::create(r, 2)),
        case!(Value, Value<u64>, |r| Value::<u64>::create(r, 0)),
        case!(Array, Array<u64>, |r| Array::<u64>::create(r, 4, 0)),
        case!(AtomicValue, AtomicValue<u64>, |r| {
            AtomicValue::<u64>::create(r, 0)
        }),
        case!(Peers, Peers, |r| Peers::create(r, 4)),
        case!(MsgQueue, MsgQueue, |r| MsgQueue::create(r, 4, 64)),
    ]
}

/// Each kind attaches to its own region and to no other kind's: the
/// region header's kind is checked before anything else of it is read.
#[test]
fn every_kind_refuses_every_other_kinds_region() {
    let cases = cases();
    for made in &cases {
        let mut b = buf(16 * 1024);
        let r = Region::from_mut_slice(bytes(&mut b));
        (made.create)(r);
        assert_eq!(
            (made.attach)(r),
            Ok(()),
            "{:?} attaches to its own",
            made.kind
        );
        for other in cases.iter().filter(|c| c.kind != made.kind) {
            assert_eq!(
                (other.attach)(r),
                Err(AttachError::KindMismatch {
                    found: made.kind as u32,
                    expected: other.kind
                }),
                "{:?} attaching to a {:?} region",
                other.kind,
                made.kind
            );
        }
    }
}
