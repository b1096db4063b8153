//! Iterators over a [`Receiver`], as std's `mpsc` and crossbeam-channel
//! give: `for v in &rx`, `rx.iter()`, `rx.try_iter()`, `rx.into_iter()`.

use bytemuck::Pod;

use super::channel::Receiver;

/// Values as they come, blocking for each; ends when the queue is
/// disconnected and drained. From [`Receiver::iter`] or `&Receiver`.
#[derive(Debug)]
#[must_use = "iterators do nothing unless consumed"]
pub struct Iter<'a, T: Pod> {
    rx: &'a Receiver<T>,
}

/// The values there now, without blocking; ends at the first empty poll.
/// From [`Receiver::try_iter`].
#[derive(Debug)]
#[must_use = "iterators do nothing unless consumed"]
pub struct TryIter<'a, T: Pod> {
    rx: &'a Receiver<T>,
}

/// As [`Iter`], owning the receiver. From `Receiver::into_iter`.
#[derive(Debug)]
#[must_use = "iterators do nothing unless consumed"]
pub struct IntoIter<T: Pod> {
    rx: Receiver<T>,
}

impl<T: Pod> Receiver<T> {
    /// An iterator that blocks for each value and ends once every sender
    /// is gone and the queue is drained:
    /// `let total: u64 = rx.iter().sum();`.
    ///
    /// ```
    /// let (tx, rx) = multiproc::queue::channel::<u64>(8)?;
    /// std::thread::spawn(move || (1..=4).for_each(|v| tx.send(v).unwrap()));
    /// assert_eq!(rx.iter().sum::<u64>(), 10);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { rx: self }
    }

    /// An iterator over the values waiting now; never blocks.
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { rx: self }
    }
}

impl<T: Pod> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<T: Pod> Iterator for TryIter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

impl<T: Pod> Iterator for IntoIter<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<'a, T: Pod> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T: Pod> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;
    fn into_iter(self) -> IntoIter<T> {
        IntoIter { rx: self }
    }
}

#[cfg(test)]
mod tests {
    use super::super::channel;

    #[test]
    fn iterators_end_as_std_mpsc() {
        let (tx, rx) = channel::<u32>(16).unwrap();
        for v in 0..5 {
            tx.send(v).unwrap();
        }
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        assert_eq!(rx.try_iter().next(), None);
        tx.send(7).unwrap();
        drop(tx);
        let mut n = 0;
        for v in &rx {
            assert_eq!(v, 7);
            n += 1;
        }
        assert_eq!(n, 1);
        assert_eq!(rx.into_iter().count(), 0);
    }
}
