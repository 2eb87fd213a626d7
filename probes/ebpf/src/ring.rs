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

/// A `#[repr(C)]` type shared with the BPF side — in the probes, a type libbpf-cargo
/// generated from the object's BTF (`skel::types`) — made only of integers and arrays of
/// integers. (The `plain` crate's `Plain` says the first half of this; the second half is
/// what [`bytes_of`] needs, for map keys and values.)
///
/// # Safety
/// Every bit pattern must be a valid value of the type (no `bool`, Rust enum, reference,
/// pointer), and the type must have no implicit padding (C structs that spell theirs out).
pub unsafe trait Pod: Copy {}

// SAFETY: integers: any bit pattern, no padding.
unsafe impl Pod for u8 {}
// SAFETY: as above.
unsafe impl Pod for u32 {}
// SAFETY: as above.
unsafe impl Pod for u64 {}
// SAFETY: as above.
unsafe impl Pod for i32 {}
// SAFETY: as above.
unsafe impl Pod for i64 {}
// SAFETY: arrays of a Pod have no padding between elements.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

/// The bytes of a [`Pod`] value, for a map key or value.
pub fn bytes_of<T: Pod>(v: &T) -> &[u8] {
    // SAFETY: a Pod has no padding, so every byte is initialised; the slice borrows `v`.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

/// A C `char` array as the skeleton types it (`i8`) viewed as bytes.
pub fn char_bytes(chars: &[i8]) -> &[u8] {
    // SAFETY: i8 and u8 have the same size and alignment; every bit pattern is a u8.
    unsafe { std::slice::from_raw_parts(chars.as_ptr().cast::<u8>(), chars.len()) }
}

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
