// Shared fuzz harness for the tradewal codec.
//
// Included with `#[path]` (no crate dependency) by the cargo-fuzz targets in fuzz_targets/ and by the
// stable-toolchain test codec/tests/fuzz_harness.rs, so both run exactly the same logic.
//
// Every input is turned into one or more segment images, either taken raw or made by applying a list
// of edits (byte writes, bit flips, truncations, sector splices and zeroings, segment drops and swaps)
// to a small valid template log. The decoder and the scanner must never panic, and their results must
// hold together: yielded frames decode, LSNs are contiguous, decoding is repeatable (I5), and any change
// to a template image is detected (the result differs from the unchanged template's).

#![allow(dead_code)]

use std::sync::OnceLock;
use tradewal_codec::build::{Item, SegmentBuilder};
use tradewal_codec::{
    Frame, LogScanner, Lsn, OutcomeKind, Record, SegmentDecoder, SegmentEnd, SegmentHeader, Side, Symbol, TradeIntent, SECTOR_BYTES,
};

/// Size of each template segment: a header block, three one-block batches and a zero block.
pub const TEMPLATE_SEGMENT_BYTES: u64 = 20 * 1024;

fn intent(ts_ns: i64, sym: &str, side: Side) -> TradeIntent {
    TradeIntent {
        ts_ns,
        symbol: Symbol::new(sym).expect("valid symbol"),
        side,
        price: 43250.5 + ts_ns as f64,
        qty: 0.25,
        stop_loss: 0.0,
        take_profit: 44100.0,
        cl_ord_id: None,
        tag: None,
        group: None,
    }
}

fn header(segment_no: u64, base_lsn: Lsn) -> SegmentHeader {
    SegmentHeader {
        k: 2,
        log_id: 0x5_EED0_F106,
        session_id: 7,
        session_start_unix_s: 1_767_225_600,
        segment_no,
        epoch: 0xE90C + 2 * segment_no, // even: zero-filled for this life (not recycled)
        base_lsn,
        segment_bytes: TEMPLATE_SEGMENT_BYTES,
        created_unix_ns: 1,
    }
}

/// The template log: segment 1 (3 batches), segment 2 (3 batches, starting with a checkpoint of the
/// in-doubt set), segment 3 an all-zero spare.
pub fn template() -> &'static [Vec<u8>; 3] {
    static T: OnceLock<[Vec<u8>; 3]> = OnceLock::new();
    T.get_or_init(|| {
        let mut s1 = SegmentBuilder::new(header(1, 1));
        // LSN 1 checkpoint, 2..=3 intents; 4 outcome of 2, 5 intent; 6..=8 intents.
        s1.batch(&[
            Item::Checkpoint(vec![], None),
            Item::Intent(intent(1, "BTCUSDT", Side::Buy)),
            Item::Intent(intent(2, "ETH-PERP", Side::Sell)),
        ])
        .expect("fits");
        s1.batch(&[Item::Outcome(2, OutcomeKind::Executed), Item::Intent(intent(3, "SOL", Side::Buy))]).expect("fits");
        s1.batch(&[
            Item::Intent(intent(4, "A", Side::Sell)),
            Item::Intent(intent(5, "ABCDEFGHIJKLMNOP", Side::Buy)),
            Item::Intent(intent(6, "X~!", Side::Buy)),
        ])
        .expect("fits");
        let mut in_doubt: Vec<tradewal_codec::InDoubt> = Vec::new();
        let mut d = SegmentDecoder::new(s1.bytes(), Some(1));
        for f in d.by_ref() {
            match f.decode().expect("valid") {
                Record::Intent(i) => in_doubt.push(tradewal_codec::InDoubt { lsn: f.lsn, intent: i, fill: None }),
                Record::Outcome(o) => in_doubt.retain(|e| e.lsn != o.intent_lsn),
                Record::Checkpoint(_) => {}
            }
        }
        let mut s2 = SegmentBuilder::new(header(2, s1.next_lsn()));
        s2.batch(&[Item::Checkpoint(in_doubt, None), Item::Outcome(3, OutcomeKind::Aborted)]).expect("fits");
        s2.batch(&[Item::Intent(intent(7, "BTCUSDT", Side::Sell))]).expect("fits");
        s2.batch(&[Item::Outcome(8, OutcomeKind::Executed), Item::Intent(intent(8, "DOGE", Side::Buy))]).expect("fits");
        [s1.into_bytes(), s2.into_bytes(), vec![0u8; TEMPLATE_SEGMENT_BYTES as usize]]
    })
}

/// Everything observable about one decode: the records yielded and how the segment ends.
#[derive(Debug, PartialEq)]
pub struct Decoded {
    /// (LSN, record) in order.
    pub records: Vec<(Lsn, Record)>,
    /// How the segment ended.
    pub end: SegmentEnd,
}

/// Decodes one image and checks the decoder's promises; never panics on its own account.
pub fn decode_checked(image: &[u8], expected_segment: Option<u64>) -> Decoded {
    let mut dec = SegmentDecoder::new(image, expected_segment);
    let header = dec.header().copied();
    let mut records = Vec::new();
    let mut prev: Option<Lsn> = None;
    for f in dec.by_ref() {
        let f: Frame<'_> = f;
        let r = f.decode().expect("a yielded frame always decodes");
        if let Some(p) = prev {
            assert_eq!(f.lsn, p + 1, "LSNs contiguous within a segment (I3)");
        } else {
            let h = header.expect("records only come from a segment with a valid header");
            assert_eq!(f.lsn, h.base_lsn, "first record has the base LSN");
        }
        assert!((f.offset as usize) < image.len());
        prev = Some(f.lsn);
        records.push((f.lsn, r));
    }
    let end = dec.end().cloned().expect("end is known once iteration stops");
    match &end {
        SegmentEnd::Empty => {
            assert!(records.is_empty() && image.iter().take(tradewal_codec::BLOCK_BYTES).all(|&b| b == 0));
            // All zeros, or a recycled spare: a stale batch header of another segment in block 1.
            let stale = image.get(tradewal_codec::BLOCK_BYTES..).and_then(tradewal_codec::format::BatchHeader::decode);
            assert!(image.iter().all(|&b| b == 0) || stale.is_some_and(|b| Some(b.segment_no) != expected_segment));
        }
        SegmentEnd::Clean { next_lsn, end_offset, batches } => {
            let h = header.expect("clean implies a valid header");
            assert_eq!(*next_lsn, h.base_lsn + records.len() as u64);
            assert!(*batches >= 1 && *end_offset <= h.segment_bytes);
            let tail = image.get(*end_offset as usize..).unwrap_or(&[]);
            if h.recycled() {
                // Stale bytes may follow, but no batch header of this life.
                let bound = tail
                    .chunks(tradewal_codec::BLOCK_BYTES)
                    .filter_map(tradewal_codec::format::BatchHeader::decode)
                    .any(|b| b.segment_no == h.segment_no && b.epoch == h.epoch);
                assert!(!bound, "a clean end with a batch of this life after it");
            } else {
                assert!(tail.iter().all(|&b| b == 0));
            }
        }
        SegmentEnd::TornTail { at, lsn, batches, .. } => {
            if *at == 0 {
                assert_eq!(*batches, 0);
            }
            if let Some(h) = header {
                assert_eq!(*lsn, if *at == 0 { h.base_lsn } else { h.base_lsn + records.len() as u64 });
            }
        }
        SegmentEnd::Corrupt(_) => {}
    }
    // I5: deciding is a pure function of the bytes.
    let again = SegmentDecoder::new(image, expected_segment).finish();
    assert_eq!(again, end, "decoding is repeatable");
    Decoded { records, end }
}

/// Scans a list of segment images numbered from `first_no`, checking the scanner's promises.
/// Returns the number of records visited, or `None` on corruption.
pub fn scan_checked(images: &[Vec<u8>], first_no: u64) -> Option<u64> {
    let mut scanner = LogScanner::new();
    let mut visited: Vec<Lsn> = Vec::new();
    for (i, img) in images.iter().enumerate() {
        let no = first_no + i as u64;
        let r = scanner.push_segment(no, img, |f, rec| {
            assert_eq!(f.kind, rec.kind());
            visited.push(f.lsn);
        });
        match r {
            Ok(s) => assert!(!matches!(s.end, SegmentEnd::Corrupt(_)), "summaries never hold corruption"),
            Err(c) => {
                // A corruption report must be printable and name a place.
                let _ = c.to_string();
                return None;
            }
        }
    }
    let st = scanner.finish();
    for w in visited.windows(2) {
        assert_eq!(w[1], w[0] + 1, "LSNs contiguous across segments (I3)");
    }
    assert_eq!(st.counts.total(), visited.len() as u64);
    assert_eq!(st.first_lsn, visited.first().copied());
    if let Some(last) = visited.last() {
        assert_eq!(st.next_lsn, last + 1);
    }
    for w in st.in_doubt.windows(2) {
        assert!(w[0].lsn < w[1].lsn, "in-doubt set in LSN order");
    }
    for d in &st.in_doubt {
        assert!(d.lsn < st.next_lsn && d.intent.validate().is_ok());
    }
    Some(visited.len() as u64)
}

/// Reads little pieces of the fuzz input.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.byte()?, self.byte()?]))
    }
}

/// Applies one edit chosen by the input to `img`; false when the input is exhausted.
fn edit(img: &mut Vec<u8>, input: &mut Input<'_>) -> bool {
    let (Some(op), Some(at)) = (input.byte(), input.u16()) else { return false };
    let Some(val) = input.byte() else { return false };
    let len = img.len().max(1);
    let at = at as usize % len;
    let sector = at / SECTOR_BYTES * SECTOR_BYTES;
    match op % 6 {
        0 => {
            if let Some(b) = img.get_mut(at) {
                *b = val;
            }
        }
        1 => {
            if let Some(b) = img.get_mut(at) {
                *b ^= 1 << (val % 8);
            }
        }
        2 => img.truncate(at),
        3 => {
            // Splice: copy one sector over another (a misdirected or stale write).
            let from = (val as usize * SECTOR_BYTES) % len / SECTOR_BYTES * SECTOR_BYTES;
            if from + SECTOR_BYTES <= img.len() && sector + SECTOR_BYTES <= img.len() {
                img.copy_within(from..from + SECTOR_BYTES, sector);
            }
        }
        4 => {
            // A sector lost in a torn write: reads back as zeros.
            let end = (sector + SECTOR_BYTES).min(img.len());
            if sector < end {
                img[sector..end].fill(0);
            }
        }
        _ => img.extend(std::iter::repeat_n(val, (at % 64) + 1)),
    }
    true
}

/// Fuzz target body: one segment image, raw or an edited template segment.
pub fn decode_segment(data: &[u8]) {
    let mut input = Input { data };
    let Some(mode) = input.byte() else { return };
    let expected = if mode & 0x80 != 0 { None } else { Some(1) };
    if mode % 4 == 0 {
        let image = input.data;
        decode_checked(image, expected);
        scan_checked(&[image.to_vec()], 1);
        return;
    }
    let tpl = &template()[0];
    let baseline = decode_checked(tpl, Some(1));
    let mut img = tpl.clone();
    while edit(&mut img, &mut input) {}
    let got = decode_checked(&img, expected);
    // Missing bytes of a short image read as zeros past the last batch; a batch (padding included)
    // that runs past the end of a short image is judged lost. So the image is unchanged when it equals
    // the template once zero-extended and still holds every written block.
    let SegmentEnd::Clean { end_offset, .. } = baseline.end else { unreachable!() };
    let mut padded = img.clone();
    if padded.len() < tpl.len() {
        padded.resize(tpl.len(), 0);
    }
    if padded == *tpl && img.len() as u64 >= end_offset {
        if expected.is_some() {
            assert_eq!(got, baseline, "an unchanged image decodes as before");
        }
    } else {
        // Every change to a valid image is detected: never the same result. The one change that may
        // still decode clean is a cut at a batch boundary (truncation, or zeros from there on: the lost
        // batches read as never written): then every byte up to the end is the template's and the
        // records are a prefix of its records.
        assert_ne!(got, baseline, "undetected change to a valid image");
        if let SegmentEnd::Clean { end_offset: cut, .. } = got.end {
            let cut = cut as usize;
            assert!(img.len() >= cut && img[..cut] == tpl[..cut], "a changed image decoded clean: {got:?}");
            assert!(baseline.records.starts_with(&got.records));
        }
    }
    scan_checked(&[img], 1);
}

/// Fuzz target body: a log of up to three segments, raw or an edited template log.
pub fn scan_log(data: &[u8]) {
    let mut input = Input { data };
    let Some(mode) = input.byte() else { return };
    if mode % 4 == 0 {
        // Raw: split the rest into 1..=4 pieces.
        let n = (mode as usize >> 2) % 4 + 1;
        let rest = input.data;
        let step = rest.len().div_ceil(n).max(1);
        let images: Vec<Vec<u8>> = rest.chunks(step).map(<[u8]>::to_vec).collect();
        for (i, img) in images.iter().enumerate() {
            decode_checked(img, Some(1 + i as u64));
        }
        scan_checked(&images, 1);
        return;
    }
    let tpl = template();
    let baseline = scan_checked(&tpl[..], 1).expect("the template log is valid");
    let mut images: Vec<Vec<u8>> = tpl.to_vec();
    while let Some(which) = input.byte() {
        let n = images.len();
        if n == 0 {
            break;
        }
        match which % 8 {
            6 => {
                images.remove(which as usize / 8 % n);
            }
            7 => {
                let (a, b) = (which as usize / 8 % n, which as usize / 64 % n);
                images.swap(a, b);
            }
            _ => {
                let i = which as usize % n;
                if !edit(&mut images[i], &mut input) {
                    break;
                }
            }
        }
    }
    let got = scan_checked(&images, 1);
    if images == tpl[..] {
        assert_eq!(got, Some(baseline));
    }
}
