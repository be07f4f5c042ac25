//! Request and event ids: unique per process run, cheap to make on the request path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::events::Plain;

static COUNTER: AtomicU64 = AtomicU64::new(0);
/// The per-process prefix, as hex.
static PREFIX: OnceLock<[u8; 16]> = OnceLock::new();

/// A 32-hex-digit id: a random per-process prefix and a counter. Unique across restarts and
/// gateways with overwhelming probability, and needs no system call per id.
pub fn next_id() -> String {
    Id::next().as_str().to_owned()
}

/// An id held on the stack: [`next_id`] for an id that is only written out (an event's), so
/// making it allocates nothing.
///
/// Aligned to a word so that `as_str`'s UTF-8 check takes its word-at-a-time path wherever
/// the id is kept (unaligned, it went a byte at a time: three times the cost).
#[derive(Clone, Copy, Debug)]
#[repr(align(8))]
pub struct Id([u8; 32]);

impl Id {
    pub fn next() -> Id {
        let prefix = PREFIX.get_or_init(|| {
            let mut hex = [0u8; 16];
            put_hex(&mut hex, rand::random());
            hex
        });
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // Written by hand: `format!` with `{:016x}` costs ~2,500 instructions per id (padding
        // and the formatter machinery), a tenth of a proxied request's own work.
        let mut hex = [0u8; 32];
        hex[..16].copy_from_slice(prefix);
        put_hex(&mut hex[16..], n);
        Id(hex)
    }

    pub fn as_str(&self) -> &str {
        // Hex digits are ASCII: this checks 32 bytes a word at a time and never fails.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The id's hex digits, unchecked.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The id as an event writes it: hex digits hold nothing to escape.
    pub fn as_plain(&self) -> Plain<'_> {
        Plain::made(&self.0)
    }
}

/// `value` as 16 lower-case hex digits, zero-padded, into `out` (16 bytes). Eight digits at a
/// time: each nibble is spread into a byte of its own, then every byte becomes its digit at
/// once (a table lookup per digit was most of an id's cost).
fn put_hex(out: &mut [u8], value: u64) {
    const LOW_NIBBLES: u64 = 0x0f0f_0f0f_0f0f_0f0f;
    const EACH: u64 = 0x0101_0101_0101_0101;
    for (half, slot) in [value >> 32, value & 0xffff_ffff]
        .into_iter()
        .zip(out.chunks_exact_mut(8))
    {
        let mut x = half;
        x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
        x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
        x = (x | (x << 4)) & LOW_NIBBLES;
        // Byte k now holds nibble k. A nibble of 10 or more carries into its byte's bit 4
        // when 6 is added (never past the byte), which picks 'a'..'f' over '0'..'9'.
        let letters = ((x + 6 * EACH) >> 4) & EACH;
        let digits = x + u64::from(b'0') * EACH + letters * u64::from(b'a' - b'0' - 10);
        slot.copy_from_slice(&digits.to_be_bytes());
    }
}

#[cfg(test)]
mod tests;
