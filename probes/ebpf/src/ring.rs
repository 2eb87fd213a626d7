//! Reading a BPF ring buffer without lifetimes in the probe's state: records are copied
//! into one growing byte buffer by the libbpf callback and handed to the probe on
//! [`RingReader::drain`]. Drop the reader before the BPF object that owns the map.

use std::cell::RefCell;
use std::rc::Rc;

use libbpf_rs::{MapCore, RingBuffer, RingBufferBuilder};

use crate::Error;

/// The size of a probe's ring buffer from the `ringbuf_map_size` param: MB, a power of two
/// in 1..=32 (others are rounded up and clamped), in bytes.
pub fn ring_bytes(ringbuf_map_size: u32) -> u32 {
    ringbuf_map_size.clamp(1, 32).next_power_of_two() << 20
}

/// A consumer of one or more BPF ring buffers.
pub struct RingReader {
    rb: RingBuffer<'static>,
    pending: Rc<RefCell<Vec<u8>>>,
}

impl RingReader {
    /// Reads the ring buffer maps `maps`.
    pub fn new(maps: &[&dyn MapCore]) -> Result<Self, Error> {
        let pending = Rc::new(RefCell::new(Vec::new()));
        let mut builder = RingBufferBuilder::new();
        for map in maps {
            let sink = Rc::clone(&pending);
            builder
                .add(*map, move |data: &[u8]| {
                    let mut buf = sink.borrow_mut();
                    buf.extend_from_slice(&(data.len() as u32).to_ne_bytes());
                    buf.extend_from_slice(data);
                    0
                })
                .map_err(Error::bpf("adding a ring buffer"))?;
        }
        let rb = builder
            .build()
            .map_err(Error::bpf("building the ring buffer reader"))?;
        Ok(RingReader { rb, pending })
    }

    /// Consumes what the kernel has written and calls `f` with each record, in order.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) {
        let _ = self.rb.consume();
        let mut buf = self.pending.borrow_mut();
        let mut rest = &buf[..];
        while rest.len() >= 4 {
            let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            f(&rest[4..4 + len]);
            rest = &rest[4 + len..];
        }
        buf.clear();
    }
}

/// A `#[repr(C)]` struct shared with the BPF side, made only of integers and arrays of
/// integers.
///
/// # Safety
/// Every bit pattern must be a valid value of the type (no `bool`, enum, reference).
pub unsafe trait Pod: Copy {}

/// Reads a [`Pod`] `T` from the front of `data`; `None` when `data` is shorter than `T`.
pub fn read_pod<T: Pod>(data: &[u8]) -> Option<T> {
    if data.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: length checked; read_unaligned copes with any alignment; `Pod` promises every
    // bit pattern is a valid `T`.
    Some(unsafe { std::ptr::read_unaligned(data.as_ptr().cast::<T>()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_size_is_a_clamped_power_of_two_in_mib() {
        assert_eq!(ring_bytes(0), 1 << 20);
        assert_eq!(ring_bytes(3), 4 << 20);
        assert_eq!(ring_bytes(64), 32 << 20);
    }
}
