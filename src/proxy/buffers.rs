//! Read buffers that size themselves to the traffic, so an idle connection holds almost no
//! memory of ours.
//!
//! With io_uring a pending read owns its buffer until data arrives, so a connection waiting for
//! its client or upstream would pin a full 16 KiB record buffer per direction. Instead each
//! direction reads into a small buffer while traffic is small, and switches to a full-record
//! buffer as soon as a small read comes back full, then to a several-record buffer if that one
//! comes back full too (bulk transfers: fewer syscalls and wake-ups per byte); it steps back down
//! when reads get short. Bulk streams keep their big buffer (their reads come back full), interactive
//! and idle ones hold 512 bytes. The big buffers come from, and go back to, the worker's allocator
//! (mimalloc's thread-local heaps), which recycles them without a lock.

/// One maximal TLS record, ciphertext, with room to spare.
pub(super) const BIG: usize = 16 * 1024 + 256;
/// Several records: for bulk transfers, fewer reads, writes and wake-ups per byte.
pub(super) const HUGE: usize = 128 * 1024;
/// What an idle or interactive direction holds while it waits.
pub(super) const SMALL: usize = 512;
/// Plaintext and record scratch buffers grown past this are released when the connection idles.
pub(super) const KEEP: usize = 4 * 1024;

/// The read buffer of one direction.
pub(super) struct ReadBuf {
    buf: Vec<u8>,
    /// The capacity to allocate when the buffer was parked.
    parked: usize,
}

impl ReadBuf {
    /// Starts small: most connections begin with a request of a few hundred bytes.
    pub(super) fn small() -> ReadBuf {
        ReadBuf {
            buf: Vec::with_capacity(SMALL),
            parked: SMALL,
        }
    }

    /// The buffer to hand to the next read, emptied.
    pub(super) fn take(&mut self) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.buf);
        if buf.capacity() == 0 {
            return Vec::with_capacity(self.parked);
        }
        buf.clear();
        buf
    }

    /// Gives up the buffer while the direction waits for readiness (readiness-driven reads,
    /// where the wait needs no buffer), remembering its size for the next `take`: a bulk
    /// stream that briefly ran dry resumes at full size, and no waiting direction holds one.
    pub(super) fn park(&mut self, buf: Vec<u8>) {
        self.parked = buf.capacity().max(SMALL);
        self.buf = Vec::new();
    }

    /// Takes the buffer back after a read of `n` bytes (already consumed) and picks the size of
    /// the next one. Returns true when the direction looks idle (the read fit in `SMALL` with room
    /// to spare).
    pub(super) fn put_back(&mut self, buf: Vec<u8>, n: usize) -> bool {
        let cap = buf.capacity();
        self.buf = if n == cap && cap < BIG {
            Vec::with_capacity(BIG)
        } else if n == cap && cap < HUGE {
            Vec::with_capacity(HUGE)
        } else if n < SMALL && cap > SMALL {
            Vec::with_capacity(SMALL)
        } else if n < BIG / 2 && cap > BIG {
            Vec::with_capacity(BIG)
        } else {
            buf
        };
        n < SMALL
    }
}

/// After a read of `n` bytes into `buf`: when it filled a buffer smaller than a record, more is
/// probably waiting (a 4 KiB response meets a 512-byte buffer). Moves the `n` bytes into a
/// record-sized buffer, with what `more` reads at once without waiting, so that the whole goes
/// on as one piece: one TLS record to the client, one write to the upstream. Otherwise `buf`
/// and `n` as they were.
pub(super) fn top_up(
    buf: Vec<u8>,
    n: usize,
    more: impl FnOnce(&mut Vec<u8>) -> usize,
) -> (Vec<u8>, usize) {
    if n < buf.capacity() || buf.capacity() >= BIG {
        return (buf, n);
    }
    let mut big = Vec::with_capacity(BIG);
    big.extend_from_slice(&buf[..n]);
    let extra = more(&mut big);
    (big, n + extra)
}

/// Releases a scratch buffer that grew past `KEEP`.
pub(super) fn relax(buf: &mut Vec<u8>) {
    if buf.capacity() > KEEP {
        *buf = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_when_a_small_read_fills_and_shrinks_when_traffic_is_small() {
        let mut rb = ReadBuf::small();
        let b = rb.take();
        assert!(b.capacity() >= SMALL && b.capacity() < BIG);
        let full = b.capacity();
        assert!(!rb.put_back(b, full), "a full read is not idle");
        let b = rb.take();
        assert!(b.capacity() >= BIG, "did not grow after a full small read");
        assert!(
            !rb.put_back(b, 9000),
            "a 9000-byte read keeps the big buffer"
        );
        let b = rb.take();
        assert!(b.capacity() >= BIG);
        assert!(rb.put_back(b, 100), "a 100-byte read looks idle");
        let b = rb.take();
        assert!(b.capacity() < BIG, "did not shrink after a small read");
        rb.put_back(b, 0);
    }

    #[test]
    fn a_full_small_read_is_topped_up_into_one_record_buffer() {
        let mut small = Vec::with_capacity(SMALL);
        small.resize(small.capacity(), 1u8);
        let n = small.len();
        let (big, total) = top_up(small, n, |b| {
            b.extend_from_slice(&[2u8; 3000]);
            3000
        });
        assert_eq!(total, n + 3000);
        assert!(big.capacity() >= BIG);
        assert_eq!(&big[..n], vec![1u8; n].as_slice());
        assert_eq!(&big[n..total], [2u8; 3000].as_slice());

        // A read with room left, or already a record's worth, is passed on as it came.
        let mut part = Vec::with_capacity(SMALL);
        part.extend_from_slice(&[3u8; 100]);
        let (same, m) = top_up(part, 100, |_| panic!("nothing more is asked for"));
        assert_eq!((same.capacity() < BIG, m), (true, 100));
        let mut record = Vec::with_capacity(BIG);
        record.resize(record.capacity(), 4u8);
        let full = record.len();
        let (same, m) = top_up(record, full, |_| panic!("nothing more is asked for"));
        assert_eq!((same.len(), m), (full, full));
    }

    #[test]
    fn a_parked_buffer_comes_back_at_its_size() {
        let mut rb = ReadBuf::small();
        let b = rb.take();
        let full = b.capacity();
        rb.put_back(b, full);
        let b = rb.take();
        let size = b.capacity();
        assert!(size >= BIG);
        rb.park(b);
        assert_eq!(rb.buf.capacity(), 0, "a parked buffer is released");
        assert_eq!(rb.take().capacity(), size);
    }
}
