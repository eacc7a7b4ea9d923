//! Read buffers lent from a per-worker pool, so an idle connection holds none of ours.
//!
//! Every relay reads with its own non-blocking system calls on readiness (`relay`, `splice`):
//! a direction waits for its socket to become readable holding no buffer, and borrows one only
//! for the read that follows. The first read of a burst takes a whole TLS record (16 KiB and a
//! little), so a response of a few KiB is one read and one record; a read that comes back full
//! moves the direction up to a several-record buffer (bulk transfers: fewer reads, writes and
//! wake-ups per byte), and short reads move it back down. A direction that finds its socket
//! empty gives the buffer back at once, remembering its size for the next burst.
//!
//! The pool keeps a few empty buffers of each size per worker thread (no locks), so a busy
//! worker does not go to the allocator for every burst: the several-record size is past what
//! mimalloc keeps in its thread-local pages, and a fresh one would be faulted in page by page.

use std::cell::RefCell;

/// One maximal TLS record, ciphertext, with room to spare: the first read of a burst.
pub(super) const BIG: usize = 16 * 1024 + 256;
/// Several records: for bulk transfers, fewer reads, writes and wake-ups per byte.
pub(super) const HUGE: usize = 128 * 1024;
/// Plaintext and record scratch buffers grown past this are released when the connection idles.
pub(super) const KEEP: usize = 4 * 1024;
/// Empty buffers of each size a worker keeps for the next burst; more go back to the allocator.
const POOL_MAX: usize = 16;

thread_local! {
    static POOL: Pool = const {
        Pool {
            big: RefCell::new(Vec::new()),
            huge: RefCell::new(Vec::new()),
        }
    };
}

/// A worker's empty read buffers, by size.
struct Pool {
    big: RefCell<Vec<Vec<u8>>>,
    huge: RefCell<Vec<Vec<u8>>>,
}

impl Pool {
    fn class(&self, size: usize) -> Option<&RefCell<Vec<Vec<u8>>>> {
        match size {
            BIG => Some(&self.big),
            HUGE => Some(&self.huge),
            _ => None,
        }
    }
}

/// An empty buffer of `size` bytes' capacity, from this worker's pool if it has one.
fn lend(size: usize) -> Vec<u8> {
    POOL.with(|pool| pool.class(size).and_then(|c| c.borrow_mut().pop()))
        .unwrap_or_else(|| Vec::with_capacity(size))
}

/// Puts `buf` back in this worker's pool (or frees it, if the pool is full or it is not one
/// of the pool's sizes).
fn give_back(mut buf: Vec<u8>) {
    buf.clear();
    POOL.with(|pool| {
        if let Some(class) = pool.class(buf.capacity()) {
            let mut class = class.borrow_mut();
            if class.len() < POOL_MAX {
                class.push(buf);
            }
        }
    });
}

/// Empty buffers in this worker's pool, of each size: (record, several records).
#[cfg(test)]
fn pooled() -> (usize, usize) {
    POOL.with(|p| (p.big.borrow().len(), p.huge.borrow().len()))
}

/// The read buffer of one direction: none while the direction waits, and the size of its
/// next read.
pub(super) struct ReadBuf {
    buf: Vec<u8>,
    /// The capacity of the next buffer to borrow.
    size: usize,
}

impl ReadBuf {
    /// Holds nothing; the first read borrows a record-sized buffer.
    pub(super) fn new() -> ReadBuf {
        ReadBuf {
            buf: Vec::new(),
            size: BIG,
        }
    }

    /// The buffer to hand to the next read, emptied.
    pub(super) fn take(&mut self) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.buf);
        if buf.capacity() == 0 {
            return lend(self.size);
        }
        buf.clear();
        buf
    }

    /// Gives the buffer back to the pool while the direction waits for readiness (a read
    /// found nothing) or once it has ended: the next `take` borrows one of the same size, so a
    /// bulk stream that briefly ran dry resumes at full size, and no waiting direction holds
    /// one.
    pub(super) fn park(&mut self, buf: Vec<u8>) {
        give_back(buf);
        self.buf = Vec::new();
    }

    /// Takes the buffer back after a read of `n` bytes (already consumed) and picks the size of
    /// the next one. Returns true when the direction looks interactive (the read was small).
    pub(super) fn put_back(&mut self, buf: Vec<u8>, n: usize) -> bool {
        let cap = buf.capacity();
        let next = if n == cap && cap < HUGE {
            HUGE
        } else if n < BIG / 2 && cap > BIG {
            BIG
        } else {
            cap
        };
        if next == cap {
            self.buf = buf;
        } else {
            give_back(buf);
            self.size = next;
        }
        n < KEEP
    }
}

impl Drop for ReadBuf {
    /// A connection that ends holding a buffer hands it on to the next one.
    fn drop(&mut self) {
        if self.buf.capacity() > 0 {
            give_back(std::mem::take(&mut self.buf));
        }
    }
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
    fn starts_at_a_record_grows_when_a_read_fills_and_shrinks_when_reads_are_short() {
        let mut rb = ReadBuf::new();
        assert_eq!(rb.buf.capacity(), 0, "holds nothing before the first read");
        let b = rb.take();
        assert_eq!(b.capacity(), BIG);
        assert!(!rb.put_back(b, BIG), "a full read is not interactive");
        let b = rb.take();
        assert_eq!(b.capacity(), HUGE, "did not grow after a full record read");
        assert!(
            !rb.put_back(b, HUGE / 2),
            "a 64 KiB read keeps the big buffer"
        );
        let b = rb.take();
        assert_eq!(b.capacity(), HUGE);
        assert!(rb.put_back(b, 100), "a 100-byte read looks interactive");
        let b = rb.take();
        assert_eq!(b.capacity(), BIG, "did not shrink after a short read");
        rb.put_back(b, 0);
    }

    #[test]
    fn a_parked_buffer_goes_to_the_pool_and_comes_back_at_its_size() {
        let (big0, huge0) = pooled();
        let mut rb = ReadBuf::new();
        let b = rb.take();
        rb.put_back(b, BIG);
        let b = rb.take();
        assert_eq!(b.capacity(), HUGE);
        rb.park(b);
        assert_eq!(rb.buf.capacity(), 0, "a parked buffer is released");
        assert_eq!(pooled(), (big0 + 1, huge0 + 1), "both went to the pool");
        let b = rb.take();
        assert_eq!(b.capacity(), HUGE);
        assert_eq!(pooled(), (big0 + 1, huge0), "it came from the pool");
        rb.put_back(b, HUGE);
        drop(rb);
        assert_eq!(
            pooled(),
            (big0 + 1, huge0 + 1),
            "a dropped direction hands its buffer on"
        );
    }

    #[test]
    fn the_pool_keeps_at_most_its_bound() {
        for _ in 0..POOL_MAX + 5 {
            give_back(Vec::with_capacity(BIG));
        }
        give_back(Vec::with_capacity(1000));
        assert_eq!(pooled().0, POOL_MAX);
    }
}
