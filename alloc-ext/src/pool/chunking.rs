//! Cutting the input into chunks: up to `chunksize` items each, encoded
//! back to back with postcard, never more bytes than a task frame holds.

use serde::Serialize;

use super::error::TaskError;
use super::state::Chunk;

/// Python's default `chunksize` for `map`: the items spread over four
/// chunks per worker, rounded up (`divmod(len, 4 * workers)`).
pub(crate) fn default_chunksize(items: usize, workers: usize) -> usize {
    if items == 0 {
        return 1;
    }
    items.div_ceil(4 * workers.max(1))
}

/// Encodes the input into chunks, item indices counting from 0.
#[derive(Debug)]
pub(crate) struct Encoder {
    chunksize: usize,
    max_payload: usize,
    next_item: u64,
    scratch: Vec<u8>,
}

impl Encoder {
    pub(crate) fn new(chunksize: usize, max_payload: usize) -> Self {
        Self {
            chunksize: chunksize.clamp(1, u32::MAX as usize),
            max_payload,
            next_item: 0,
            scratch: Vec::new(),
        }
    }

    /// Reads up to `chunksize` items; returns their chunks (one, or more
    /// when the byte limit cuts it or an item cannot be sent) and whether
    /// the input ended.
    pub(crate) fn next_chunks<T: Serialize>(
        &mut self,
        input: &mut impl Iterator<Item = T>,
    ) -> (Vec<Chunk>, bool) {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        let mut count = 0u32;
        let mut first = self.next_item;
        let mut exhausted = false;
        for _ in 0..self.chunksize {
            let Some(item) = input.next() else {
                exhausted = true;
                break;
            };
            let idx = self.next_item;
            self.next_item += 1;
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            let failure = match postcard::to_extend(&item, scratch) {
                Ok(s) => {
                    scratch = s;
                    (scratch.len() > self.max_payload).then_some(TaskError::ItemTooLarge {
                        len: scratch.len(),
                        max: self.max_payload,
                    })
                }
                Err(e) => {
                    scratch = Vec::new();
                    Some(TaskError::Codec(format!("cannot encode the item: {e}")))
                }
            };
            if failure.is_some() || buf.len() + scratch.len() > self.max_payload {
                if count > 0 {
                    out.push(Chunk::new(first, count, std::mem::take(&mut buf)));
                    count = 0;
                }
                first = idx;
            }
            if let Some(error) = failure {
                out.push(Chunk::failed(idx, error));
                first = self.next_item;
            } else {
                buf.extend_from_slice(&scratch);
                count += 1;
            }
            self.scratch = scratch;
        }
        if count > 0 {
            out.push(Chunk::new(first, count, buf));
        }
        (out, exhausted)
    }

    /// Encodes the whole input.
    pub(crate) fn all<T: Serialize>(&mut self, input: &mut impl Iterator<Item = T>) -> Vec<Chunk> {
        let mut out = Vec::new();
        loop {
            let (mut c, end) = self.next_chunks(input);
            out.append(&mut c);
            if end {
                return out;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_default_chunksize() {
        assert_eq!(default_chunksize(0, 2), 1);
        assert_eq!(default_chunksize(100_000, 2), 12_500);
        assert_eq!(default_chunksize(9, 2), 2);
        assert_eq!(default_chunksize(8, 2), 1);
    }

    #[test]
    fn chunks_respect_count_and_bytes() {
        let mut e = Encoder::new(4, 10);
        let items: Vec<String> = ["a", "bbbb", "cc", "dddddddddddd", "e"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let chunks = e.all(&mut items.into_iter());
        // "a"(2 B) + "bbbb"(5 B) fit in 10; "cc" (3) would make 10: fits;
        // the 13-byte item fails alone; "e" starts a new chunk.
        let shape: Vec<(u64, u32, bool)> = chunks
            .iter()
            .map(|c| (c.first_item, c.count, c.failed.is_some()))
            .collect();
        assert_eq!(shape, vec![(0, 3, false), (3, 1, true), (4, 1, false)]);
        assert!(matches!(
            chunks[1].failed,
            Some(TaskError::ItemTooLarge { len: 13, max: 10 })
        ));
    }

    #[test]
    fn empty_input_has_no_chunks() {
        let mut e = Encoder::new(3, 100);
        let (c, end) = e.next_chunks(&mut std::iter::empty::<u8>());
        assert!(c.is_empty() && end);
    }
}
