//! Differential test: the SPSC and MPMC rings against `VecDeque`.
//!
//! The input picks a capacity and then a sequence of operations (push,
//! batch push, in-place write committed or abandoned, pop, batch pop,
//! in-place read, peek); after each, both rings must agree with the model
//! exactly: same values, same `Full`/`Empty` answers, same length.
#![no_main]

use std::collections::VecDeque;

use libfuzzer_sys::fuzz_target;
use multiproc_core::mpmc::MpmcRing;
use multiproc_core::region::Region;
use multiproc_core::spsc::SpscRing;

#[repr(C, align(128))]
#[derive(Clone, Copy)]
struct Line([u8; 128]);

fn buffer(len: usize) -> Vec<Line> {
    vec![Line([0; 128]); len.div_ceil(128)]
}

fn bytes(b: &mut [Line]) -> &mut [u8] {
    // SAFETY: Line is 128 plain bytes without padding.
    unsafe { std::slice::from_raw_parts_mut(b.as_mut_ptr().cast::<u8>(), b.len() * 128) }
}

fuzz_target!(|data: &[u8]| {
    let Some((&c, ops)) = data.split_first() else {
        return;
    };
    let cap = u64::from(c % 17) + 1; // 1..=17: powers of two and not
    let mut sbuf = buffer(SpscRing::<u32>::memory_size(cap).unwrap());
    let mut mbuf = buffer(MpmcRing::<u32>::memory_size(cap).unwrap());
    let spsc = SpscRing::<u32>::create(Region::from_mut_slice(bytes(&mut sbuf)), cap).unwrap();
    let mpmc = MpmcRing::<u32>::create(Region::from_mut_slice(bytes(&mut mbuf)), cap).unwrap();
    let (mut tx, mut rx) = spsc.split().unwrap();
    let mut model = VecDeque::new();
    let mut next = 0u32;

    for &op in ops {
        let n = usize::from(op >> 3);
        match op & 7 {
            0 => {
                let full = model.len() as u64 == cap;
                assert_eq!(tx.try_push(next).is_err(), full);
                assert_eq!(mpmc.try_push(next).is_err(), full);
                if !full {
                    model.push_back(next);
                }
                next += 1;
            }
            1 => {
                let vs: Vec<u32> = (next..next + n as u32).collect();
                let room = (cap as usize - model.len()).min(n);
                assert_eq!(tx.push_slice(&vs), room);
                assert_eq!(mpmc.push_slice(&vs), room);
                model.extend(&vs[..room]);
                next += n as u32;
            }
            2 | 3 => {
                let commit = op & 1 == 0;
                let full = model.len() as u64 == cap;
                match tx.write_slot() {
                    Some(mut slot) => {
                        assert!(!full);
                        *slot = next;
                        if commit {
                            slot.commit();
                        }
                    }
                    None => assert!(full),
                }
                // The MPMC ring writes in place and always publishes.
                if commit {
                    assert_eq!(mpmc.try_push_with(|v| *v = next).is_err(), full);
                    if !full {
                        model.push_back(next);
                    }
                }
                next += 1;
            }
            4 => {
                let want = model.pop_front();
                assert_eq!(rx.try_pop().ok(), want);
                assert_eq!(mpmc.try_pop().ok(), want);
            }
            5 => {
                let mut a = vec![0u32; n];
                let mut b = vec![0u32; n];
                let k = model.len().min(n);
                assert_eq!(rx.pop_slice(&mut a), k);
                assert_eq!(mpmc.pop_slice(&mut b), k);
                let want: Vec<u32> = model.drain(..k).collect();
                assert_eq!(&a[..k], &want[..]);
                assert_eq!(&b[..k], &want[..]);
            }
            6 => {
                let want = model.pop_front();
                let got = rx.read_slot().map(|s| *s);
                assert_eq!(got, want);
                assert_eq!(mpmc.try_pop_with(|v| *v).ok(), want);
            }
            _ => {
                assert_eq!(rx.peek(), model.front().copied());
            }
        }
        assert_eq!(spsc.len(), model.len() as u64);
        assert_eq!(mpmc.len(), model.len() as u64);
    }
});
