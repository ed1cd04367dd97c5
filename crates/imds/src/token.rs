//! IMDSv2 session tokens and container authorization tokens. Both are
//! stateless: a MAC under a key derived from master.key binds them to one
//! instance (and, for session tokens, an expiry), so they survive restarts
//! and a token minted for one instance means nothing to another.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use keycard_proto::ct_eq;
use keycard_services::Keycard;

/// Longest session token TTL AWS allows (6 hours).
pub const MAX_TTL: i64 = 21_600;

const SESSION_LABEL: &str = "keycard imds session token v1";
const CONTAINER_LABEL: &str = "keycard container credentials token v1";
/// Bytes of MAC kept in a token.
const TAG: usize = 24;

fn session_mac(kc: &Keycard, instance_id: &str, expiry: i64) -> [u8; 32] {
    let mut data = Vec::with_capacity(instance_id.len() + 9);
    data.extend_from_slice(instance_id.as_bytes());
    data.push(0);
    data.extend_from_slice(&expiry.to_be_bytes());
    kc.mac(SESSION_LABEL, &data)
}

/// A session token for `instance_id`, valid until `expiry` (epoch seconds).
pub fn mint_session(kc: &Keycard, instance_id: &str, expiry: i64) -> String {
    let mut raw = Vec::with_capacity(1 + 8 + TAG);
    raw.push(1u8);
    raw.extend_from_slice(&expiry.to_be_bytes());
    raw.extend_from_slice(&session_mac(kc, instance_id, expiry)[..TAG]);
    B64.encode(raw)
}

/// Whether `token` is a live session token of `instance_id` at `now`.
pub fn check_session(kc: &Keycard, instance_id: &str, token: &str, now: i64) -> bool {
    if token.len() > 128 {
        return false;
    }
    let Ok(raw) = B64.decode(token.trim()) else {
        return false;
    };
    // Layout: version byte 1, big-endian expiry, truncated MAC.
    let Some((&1, rest)) = raw.split_first() else {
        return false;
    };
    let Some((e, tag)) = rest.split_first_chunk::<8>() else {
        return false;
    };
    if tag.len() != TAG {
        return false;
    }
    let expiry = i64::from_be_bytes(*e);
    let mac = session_mac(kc, instance_id, expiry);
    ct_eq(tag, &mac[..TAG]) && expiry > now
}

/// The `AWS_CONTAINER_AUTHORIZATION_TOKEN` of an instance.
pub fn mint_container(kc: &Keycard, instance_id: &str) -> String {
    let mac = kc.mac(CONTAINER_LABEL, instance_id.as_bytes());
    format!(
        "kcc1.{}.{}",
        B64.encode(instance_id.as_bytes()),
        B64.encode(&mac[..TAG])
    )
}

/// The instance a container token was minted for, if it is genuine.
pub fn open_container(kc: &Keycard, token: &str) -> Option<String> {
    if token.len() > 256 {
        return None;
    }
    let rest = token.trim().strip_prefix("kcc1.")?;
    let (id, tag) = rest.split_once('.')?;
    let id = String::from_utf8(B64.decode(id).ok()?).ok()?;
    let tag = B64.decode(tag).ok()?;
    let mac = kc.mac(CONTAINER_LABEL, id.as_bytes());
    ct_eq(&tag, &mac[..TAG]).then_some(id)
}
