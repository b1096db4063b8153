//! [`Plain`]: a `Pod` value that serde carries as its bytes.

use std::fmt;
use std::marker::PhantomData;

use bytemuck::Pod;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};

/// A `Pod` value carried through serde as its raw bytes: one copy, no
/// per-field encoding, and any size (serde's own impls stop at arrays of
/// 32).
///
/// For the serde paths of this crate ([`Pool`](crate::Pool) items and
/// results, `send_serde`): `Plain<[f32; 1024]>` crosses as 4 KiB copied
/// at once, where the array itself could not be an item at all. Bytes
/// are in this machine's order: for processes of one machine, which is
/// what the pool and the pipes connect.
///
/// ```
/// use multiproc::Plain;
///
/// let v = Plain([1.5f32; 100]);
/// let bytes = postcard::to_allocvec(&v).unwrap();
/// assert_eq!(bytes.len(), 2 + 400); // a length, then the bytes
/// let back: Plain<[f32; 100]> = postcard::from_bytes(&bytes).unwrap();
/// assert_eq!(back, v);
/// // Bytes of another size are an error, not a bad value.
/// assert!(postcard::from_bytes::<Plain<u64>>(&bytes).is_err());
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Plain<T>(pub T);

impl<T: fmt::Debug> fmt::Debug for Plain<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: Pod> Serialize for Plain<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytemuck::bytes_of(&self.0))
    }
}

impl<'de, T: Pod> Deserialize<'de> for Plain<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Bytes<T>(PhantomData<T>);
        impl<T: Pod> Visitor<'_> for Bytes<T> {
            type Value = Plain<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} bytes", std::mem::size_of::<T>())
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                bytemuck::try_pod_read_unaligned(v)
                    .map(Plain)
                    .map_err(|_| E::invalid_length(v.len(), &self))
            }
        }
        d.deserialize_bytes(Bytes(PhantomData))
    }
}
