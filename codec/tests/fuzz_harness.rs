//! Runs the fuzz targets' harness (fuzz/harness.rs, shared by `#[path]`) on the stable toolchain over a
//! few thousand seeded pseudo-random inputs: raw bytes, and edits of a valid template log (byte writes,
//! bit flips, truncations, sector splices and zeroings, extensions, segment drops and swaps).

#[path = "../../fuzz/harness.rs"]
mod harness;

use tradewal_testkit::rng::Rng;

/// An input for the harness: a mode byte, then either raw bytes or a list of edits.
fn input(rng: &mut Rng, raw: bool) -> Vec<u8> {
    if raw {
        let mut v = vec![(rng.below(64) as u8) << 2]; // mode % 4 == 0: raw
        let n = match rng.below(4) {
            0 => rng.below(64) as usize,
            1 => rng.below(5000) as usize,
            _ => rng.below(24 * 1024) as usize,
        };
        let mut body = rng.bytes(n);
        if rng.below(2) == 0 {
            // Mostly-zero images exercise the zero/empty/data-after-end paths.
            for b in body.iter_mut() {
                if rng.below(16) != 0 {
                    *b = 0;
                }
            }
        }
        if rng.below(4) == 0 && body.len() >= 8 {
            body[..8].copy_from_slice(b"TRADEWAL");
        }
        v.extend(body);
        v
    } else {
        let mut v = vec![(rng.below(64) as u8) << 2 | (1 + rng.below(3) as u8)];
        let edits = 1 + rng.below(4) as usize;
        for _ in 0..edits {
            // scan_log reads a selector byte first; decode_segment reads it as the op byte.
            v.push(rng.below(6) as u8 + 8 * rng.below(32) as u8);
            v.extend(rng.bytes(4));
        }
        v
    }
}

#[test]
fn decode_segment_harness_never_panics() {
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
    for i in 0..4000 {
        let data = input(&mut rng, i % 3 == 0);
        harness::decode_segment(&data);
    }
}

#[test]
fn scan_log_harness_never_panics() {
    let mut rng = Rng::new(0xD1B5_4A32_D192_ED03);
    for i in 0..2000 {
        let data = input(&mut rng, i % 3 == 0);
        harness::scan_log(&data);
    }
}

#[test]
fn harness_detects_every_single_edit_of_the_template() {
    // Every single-bit flip of template segment 1 (every byte, every bit): the harness itself
    // asserts each is detected or classified.
    let mut n = 0u64;
    for at in 0..harness::TEMPLATE_SEGMENT_BYTES as usize {
        let [lo, hi] = (at as u16).to_le_bytes();
        for bit in 0..8u8 {
            harness::decode_segment(&[1, 1, lo, hi, bit]);
            n += 1;
        }
    }
    assert_eq!(n, harness::TEMPLATE_SEGMENT_BYTES * 8);
}
