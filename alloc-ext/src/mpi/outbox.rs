//! Sends that never block: `MPI_Isend` of a buffer the outbox keeps until
//! MPI says it is sent.
//!
//! A blocking `MPI_Send` of a large message waits until the receiver
//! posts the matching receive (the rendezvous protocol): when the master
//! sends a chunk to a rank while that rank sends a result to the master,
//! both would wait for ever. rsmpi's immediate sends borrow their buffer
//! for a scope, which a loop that lives as long as the pool cannot give;
//! so this module calls `MPI_Isend` and `MPI_Test` itself, owning each
//! buffer until its request completes.

use std::os::raw::c_int;

use mpi::ffi;
use mpi::raw::AsRaw;
use mpi::topology::SimpleCommunicator;

/// Messages on their way out, with their requests.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pending: Vec<(ffi::MPI_Request, Vec<u8>)>,
}

impl Outbox {
    /// Starts sending `buf` to `dest` with `tag`.
    ///
    /// # Errors
    ///
    /// A message longer than MPI's `int` count (2 GiB).
    pub(crate) fn send(
        &mut self,
        world: &SimpleCommunicator,
        dest: i32,
        tag: i32,
        buf: Vec<u8>,
    ) -> Result<(), String> {
        let len = c_int::try_from(buf.len())
            .map_err(|_| format!("a message of {} bytes is too long for MPI", buf.len()))?;
        // SAFETY: RSMPI_REQUEST_NULL is a plain handle value, initialized
        // by the MPI library's shim.
        let mut req = unsafe { ffi::RSMPI_REQUEST_NULL };
        // SAFETY: `buf` holds `len` initialized bytes; its heap block does
        // not move when the Vec is moved into `pending`, where it stays
        // until `MPI_Test` or `MPI_Wait` reports the request complete (also
        // in `Drop`), so MPI never reads freed memory. The datatype and
        // communicator handles are valid while MPI is initialized, which
        // the caller's `world` proves.
        unsafe {
            ffi::MPI_Isend(
                buf.as_ptr().cast(),
                len,
                ffi::RSMPI_UINT8_T,
                dest,
                tag,
                world.as_raw(),
                &mut req,
            );
        }
        self.pending.push((req, buf));
        Ok(())
    }

    /// Drops the buffers whose send completed; whether any did.
    pub(crate) fn progress(&mut self) -> bool {
        let before = self.pending.len();
        self.pending.retain_mut(|(req, _)| {
            let mut done: c_int = 0;
            // SAFETY: `req` is an active request of this outbox (a completed
            // one is removed at once, so none is tested twice); the status
            // is ignored.
            unsafe {
                ffi::MPI_Test(req, &mut done, ffi::RSMPI_STATUS_IGNORE);
            }
            done == 0
        });
        self.pending.len() != before
    }

    /// Waits for every send to complete.
    pub(crate) fn flush(&mut self) {
        for (mut req, buf) in self.pending.drain(..) {
            // SAFETY: as in `progress`; `buf` is freed only after.
            unsafe {
                ffi::MPI_Wait(&mut req, ffi::RSMPI_STATUS_IGNORE);
            }
            drop(buf);
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        // The buffers must outlive their sends.
        self.flush();
    }
}
