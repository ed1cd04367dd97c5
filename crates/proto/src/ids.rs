//! AWS identifiers.
//!
//! Access key ids are 20 characters: a 4-character prefix (`AKIA` long-term,
//! `ASIA` temporary) and the RFC 4648 base32 (`A-Z2-7`) encoding of 10 bytes whose
//! first 6 bytes, as a big-endian 48-bit number `x`, carry the account:
//! `account = (x & 0x7fffffffff80) >> 7`. The remaining bits are random.
//!
//! Unique ids (`AIDA` user, `AROA` role, `AGPA` group, `ANPA` managed policy,
//! `AIPA` instance profile, …) are 21 characters: the prefix and 17 base32 characters.

/// RFC 4648 base32 alphabet.
const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Standard base64 alphabet.
const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Largest account number (12 decimal digits).
const MAX_ACCOUNT: u64 = 999_999_999_999;

/// Base32-encode `data` without padding.
fn b32_encode(data: &[u8], out: &mut String) {
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(b32_char(acc >> bits));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(b32_char(acc << (5 - bits)));
    }
}

/// The base32 digit for the low five bits of `v` (the mask keeps the lookup in range).
fn b32_char(v: u32) -> char {
    char::from(B32.get((v & 31) as usize).copied().unwrap_or(b'A'))
}

/// Base32-decode (no padding; whole bytes only). `None` on a character outside `A-Z2-7`.
fn b32_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    Some(out)
}

fn rand_byte(random: &[u8], i: usize) -> u8 {
    random.get(i).copied().unwrap_or(0)
}

fn parse_account(account: &str) -> Option<u64> {
    if account.is_empty() || account.len() > 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    account.parse().ok().filter(|&a| a <= MAX_ACCOUNT)
}

/// An access key id for `account` (12 digits) with prefix `AKIA`/`ASIA`,
/// filled from `random` (5 bytes used; missing bytes count as zero).
/// `None` if the account is not 1–12 decimal digits or the prefix is not 4 `A-Z` letters.
pub fn try_access_key_id(prefix: &str, account: &str, random: &[u8]) -> Option<String> {
    let acct = parse_account(account)?;
    if prefix.len() != 4 || !prefix.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let r0 = rand_byte(random, 0);
    let x: u64 = (u64::from(r0 & 0x80) << 40) | (acct << 7) | u64::from(r0 & 0x7f);
    let mut raw = [0u8; 10];
    raw[..6].copy_from_slice(&x.to_be_bytes()[2..]);
    for (i, slot) in raw[6..].iter_mut().enumerate() {
        *slot = rand_byte(random, i + 1);
    }
    let mut id = String::with_capacity(20);
    id.push_str(prefix);
    b32_encode(&raw, &mut id);
    Some(id)
}

/// An access key id for `account` with prefix `AKIA`/`ASIA` (see [`try_access_key_id`]).
/// An invalid account encodes as account `000000000000`; an invalid prefix as `AKIA`.
pub fn access_key_id(prefix: &str, account: &str, random: &[u8]) -> String {
    let prefix = if prefix.len() == 4 && prefix.bytes().all(|b| b.is_ascii_uppercase()) {
        prefix
    } else {
        "AKIA"
    };
    try_access_key_id(prefix, account, random)
        .or_else(|| try_access_key_id(prefix, "0", random))
        .unwrap_or_default()
}

/// The account an access key id belongs to, as 12 zero-padded digits.
/// `None` unless the id is 20 characters of `A-Z2-7`.
pub fn account_from_access_key_id(id: &str) -> Option<String> {
    if id.len() != 20 || !id.is_ascii() {
        return None;
    }
    let raw = b32_decode(id.get(4..)?)?;
    if !id[..4].bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut be = [0u8; 8];
    be[2..].copy_from_slice(raw.get(..6)?);
    let x = u64::from_be_bytes(be);
    let acct = (x & 0x7fff_ffff_ff80) >> 7;
    Some(format!("{acct:012}"))
}

/// A unique id: `prefix` (`AIDA`, `AROA`, `AIPA`, `AGPA`, `ANPA`, …) and 17
/// base32 characters derived from SHA-256(`random`).
///
/// Pass random bytes (16 is plenty) for a fresh id; passing a name gives a
/// stable id for that name (e.g. AWS managed policies), distinct for distinct names.
pub fn unique_id(prefix: &str, random: &[u8]) -> String {
    let digest = crate::crypto::sha256(random);
    let mut id = String::with_capacity(prefix.len() + 18);
    id.push_str(prefix);
    let mut body = String::with_capacity(18);
    b32_encode(&digest[..11], &mut body);
    body.truncate(17);
    id.push_str(&body);
    id
}

/// A 40-character secret access key (`[A-Za-z0-9+/]`): base64 of 30 random bytes.
pub fn secret_access_key(random: &[u8; 30]) -> String {
    let mut s = String::with_capacity(40);
    for chunk in random.chunks_exact(3) {
        let &[a, b, c] = chunk else { continue };
        let n = (u32::from(a) << 16) | (u32::from(b) << 8) | u32::from(c);
        for shift in [18, 12, 6, 0] {
            let digit = B64.get(((n >> shift) & 63) as usize).copied();
            s.push(char::from(digit.unwrap_or(b'A')));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_example() {
        assert_eq!(
            account_from_access_key_id("ASIAY34FZKBOKMUTVV7A").as_deref(),
            Some("609629065308")
        );
    }

    #[test]
    fn round_trip_fixed() {
        let id = access_key_id("AKIA", "123456789012", &[0xff, 1, 2, 3, 4]);
        assert_eq!(id.len(), 20);
        assert!(id.starts_with("AKIA"));
        assert_eq!(
            account_from_access_key_id(&id).as_deref(),
            Some("123456789012")
        );
        let id = access_key_id("ASIA", "000000000001", &[]);
        assert_eq!(
            account_from_access_key_id(&id).as_deref(),
            Some("000000000001")
        );
        assert_eq!(try_access_key_id("ASIA", "1234567890123", &[]), None);
        assert_eq!(try_access_key_id("ASIA", "12a", &[]), None);
        assert_eq!(try_access_key_id("asia", "1", &[]), None);
        assert_eq!(
            account_from_access_key_id(&access_key_id("x", "bad", &[9])).as_deref(),
            Some("000000000000")
        );
    }

    #[test]
    fn rejects_bad_ids() {
        for bad in [
            "",
            "AKIA",
            "AKIAY34FZKBOKMUTVV7",
            "AKIAY34FZKBOKMUTVV701",
            "AKIAY34FZKBOKMUTVV71",
            "akiaY34FZKBOKMUTVV7A",
            "AKIAY34FZKBOKMUTVVé",
        ] {
            assert_eq!(account_from_access_key_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn unique_and_secret() {
        let id = unique_id("AIDA", &[0xff; 16]);
        assert_eq!(id.len(), 21);
        assert!(
            id[4..]
                .bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
        );
        assert_ne!(id, unique_id("AIDA", &[0xfe; 16]));
        // Stable per name, distinct for names sharing a long prefix.
        assert_eq!(
            unique_id("ANPA", b"AmazonS3FullAccess"),
            unique_id("ANPA", b"AmazonS3FullAccess")
        );
        assert_ne!(
            unique_id("ANPA", b"AWSLambdaBasicExecutionRole"),
            unique_id("ANPA", b"AWSLambdaBasicExecutionRole2")
        );
        let s = secret_access_key(&[0xfb; 30]);
        assert_eq!(s.len(), 40);
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        );
        assert_eq!(&secret_access_key(&[0; 30]), &"A".repeat(40));
    }
}
