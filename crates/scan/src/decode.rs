//! Looking inside encoded content: base64 (the whole input or runs in it)
//! and gzip, recursively, with bounds against decompression bombs.

use std::io::Read;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::{Layer, Match, text};

/// How many decodings deep a match may be (base64 -> gzip -> base64 is 3).
pub const MAX_DEPTH: usize = 3;
/// At most this many bytes come out of one gzip stream (zip-bomb guard).
pub const MAX_INFLATED: u64 = 16 * 1024 * 1024;
/// At most this many decoded bytes per [`scan`] call, over all layers.
const MAX_DECODED_TOTAL: usize = 64 * 1024 * 1024;
/// Shorter base64 runs are ids, hashes or words, not encoded documents.
const MIN_B64_RUN: usize = 32;
/// Decoded base64 is scanned only when it looks like text (or is gzip).
const MIN_PRINTABLE: f64 = 0.85;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

pub(crate) fn scan(data: &[u8]) -> Vec<Match> {
    let mut budget = MAX_DECODED_TOTAL;
    let mut out = layer(data, 0, &mut budget);
    out.sort_by_key(|m| (m.start, m.kind));
    out.dedup_by(|a, b| a.start == b.start && a.kind == b.kind && a.key_id == b.key_id);
    out
}

/// `data` as text with the same byte offsets: each invalid UTF-8 byte
/// becomes one U+001A (SUBSTITUTE).
fn offset_preserving_text(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len());
    for chunk in data.utf8_chunks() {
        s.push_str(chunk.valid());
        s.extend(chunk.invalid().iter().map(|_| '\u{1a}'));
    }
    s
}

/// Matches in `data` and in what it decodes to, positioned in `data`.
fn layer(data: &[u8], depth: usize, budget: &mut usize) -> Vec<Match> {
    if data.starts_with(&GZIP_MAGIC) {
        if depth >= MAX_DEPTH {
            return Vec::new();
        }
        let inflated = gunzip(data, budget);
        let inner = layer(&inflated, depth + 1, budget);
        return reanchor(inner, Layer::Gzip, (0, data.len()), (1, 1));
    }
    let text = offset_preserving_text(data);
    let mut out = text::scan(&text);
    if depth >= MAX_DEPTH {
        return out;
    }
    for (start, end) in base64_regions(&text) {
        let Some(decoded) = text.get(start..end).and_then(|r| decode_b64(r, budget)) else {
            continue;
        };
        if !decoded.starts_with(&GZIP_MAGIC) && !looks_like_text(&decoded) {
            continue;
        }
        let inner = layer(&decoded, depth + 1, budget);
        let pos = text::position(&text, start);
        out.extend(reanchor(inner, Layer::Base64, (start, end), pos));
    }
    out
}

/// Matches found inside a decoded region, moved to the region's place.
fn reanchor(
    inner: Vec<Match>,
    via: Layer,
    (start, end): (usize, usize),
    (line, column): (usize, usize),
) -> Vec<Match> {
    inner
        .into_iter()
        .map(|mut m| {
            m.via.insert(0, via);
            Match {
                line,
                column,
                start,
                end,
                ..m
            }
        })
        .collect()
}

/// Inflate at most [`MAX_INFLATED`] bytes (and what is left of the budget);
/// a truncated or corrupt stream yields what was inflated before the error.
fn gunzip(data: &[u8], budget: &mut usize) -> Vec<u8> {
    let limit = MAX_INFLATED.min(*budget as u64);
    let mut out = Vec::new();
    let _ = flate2::read::MultiGzDecoder::new(data)
        .take(limit)
        .read_to_end(&mut out);
    *budget = budget.saturating_sub(out.len());
    out
}

fn decode_b64(region: &str, budget: &mut usize) -> Option<Vec<u8>> {
    let clean: Vec<u8> = region
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
        .collect();
    // A length of 1 mod 4 cannot be base64: drop the stray last character.
    let usable = clean.len() - usize::from(clean.len() % 4 == 1);
    let clean = clean.get(..usable)?;
    if clean.len() / 4 * 3 > *budget {
        return None;
    }
    let decoded = B64.decode(clean).ok()?;
    *budget = budget.saturating_sub(decoded.len());
    Some(decoded)
}

/// The whole input when it is one base64 document (line breaks allowed),
/// else every single-line run of at least [`MIN_B64_RUN`] base64 characters.
fn base64_regions(text: &str) -> Vec<(usize, usize)> {
    let trimmed = text.trim();
    let lead = text.len() - text.trim_start().len();
    let whole = trimmed.len() >= MIN_B64_RUN
        && trimmed.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=') || b.is_ascii_whitespace()
        })
        && trimmed.bytes().any(|b| b.is_ascii_whitespace());
    if whole {
        return vec![(lead, lead + trimmed.len())];
    }
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let is_b64 = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/');
        if !b.get(i).is_some_and(is_b64) {
            i += 1;
            continue;
        }
        let start = i;
        while b.get(i).is_some_and(is_b64) {
            i += 1;
        }
        while b.get(i) == Some(&b'=') {
            i += 1;
        }
        if i - start >= MIN_B64_RUN {
            out.push((start, i));
        }
    }
    out
}

fn looks_like_text(data: &[u8]) -> bool {
    if data.is_empty() {
        return false;
    }
    let printable = data
        .iter()
        .filter(|&&b| b.is_ascii_graphic() || b.is_ascii_whitespace() || b >= 0x80)
        .count();
    printable as f64 / data.len() as f64 >= MIN_PRINTABLE
}
