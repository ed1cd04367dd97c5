//! SSH key material for EC2 key pairs: generating RSA and ED25519 keys
//! (private key as PEM, OpenSSH or PuTTY text), reading imported OpenSSH
//! public keys, and the fingerprints AWS shows for each kind. Private
//! material is returned once and never stored.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use keycard_proto::secret::SecretKey;

use crate::error::{Result, ServiceError};

/// A public key as keycard keeps it: its type, the OpenSSH line (without
/// comment) and AWS's fingerprint.
#[derive(Debug, Clone)]
pub struct PublicKey {
    /// `rsa` | `ed25519`
    pub key_type: &'static str,
    /// `ssh-rsa AAAA…`
    pub openssh: String,
    pub fingerprint: String,
}

/// A created key: the public part and the private material, once.
pub struct Created {
    pub public: PublicKey,
    pub material: SecretKey,
}

fn internal(what: &str) -> ServiceError {
    ServiceError::Internal(format!("key generation failed: {what}"))
}

fn invalid_format() -> ServiceError {
    ServiceError::InvalidKeyFormat("Key is not in valid OpenSSH public key format".into())
}

// --- DER, as much as PKCS#1/#8 need ---

/// One DER element: its tag and content, and the rest of the input.
fn der_next(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&l0, rest) = rest.split_first()?;
    let (len, rest) = if l0 < 0x80 {
        (usize::from(l0), rest)
    } else {
        let n = usize::from(l0 & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (lb, rest) = rest.split_at(n);
        (
            lb.iter().fold(0usize, |a, &x| (a << 8) | usize::from(x)),
            rest,
        )
    };
    if rest.len() < len {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    Some((tag, content, rest))
}

fn der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    der_len(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

/// The PKCS#1 key inside a PKCS#8 PrivateKeyInfo.
fn pkcs8_inner(pkcs8: &[u8]) -> Option<&[u8]> {
    let (_, info, _) = der_next(pkcs8)?;
    let (_, _version, rest) = der_next(info)?;
    let (_, _alg, rest) = der_next(rest)?;
    let (tag, key, _) = der_next(rest)?;
    (tag == 0x04).then_some(key)
}

/// The integers of a DER SEQUENCE (PKCS#1 RSAPrivateKey: version, n,
/// e, d, p, q, dp, dq, qinv), each as its minimal two's-complement
/// bytes: exactly an SSH `mpint` body.
fn der_integers(seq: &[u8]) -> Option<Vec<&[u8]>> {
    let (_, mut body, _) = der_next(seq)?;
    let mut out = Vec::new();
    while !body.is_empty() {
        let (tag, v, rest) = der_next(body)?;
        if tag != 0x02 {
            return None;
        }
        out.push(v);
        body = rest;
    }
    Some(out)
}

/// SubjectPublicKeyInfo DER of an RSA key (what `openssl rsa -pubout
/// -outform DER` writes; AWS's MD5 fingerprint of imported keys).
fn rsa_spki(n: &[u8], e: &[u8]) -> Vec<u8> {
    const RSA_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    let mut alg = der(0x06, RSA_OID);
    alg.extend([0x05, 0x00]);
    let mut ints = der(0x02, &mpint(n));
    ints.extend(der(0x02, &mpint(e)));
    let mut bits = vec![0u8];
    bits.extend(der(0x30, &ints));
    let mut body = der(0x30, &alg);
    body.extend(der(0x03, &bits));
    der(0x30, &body)
}

// --- SSH wire format ---

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend((s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// A positive integer as an SSH mpint body: no extra leading zeros, one
/// zero when the high bit is set.
fn mpint(v: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = v.iter().copied().skip_while(|&b| b == 0).collect();
    match trimmed.first() {
        Some(&b) if b & 0x80 != 0 => [&[0u8][..], &trimmed].concat(),
        _ => trimmed,
    }
}

fn read_string<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
    if b.len() < 4 {
        return None;
    }
    let (l, rest) = b.split_at(4);
    let len = u32::from_be_bytes(l.try_into().ok()?) as usize;
    if rest.len() < len {
        return None;
    }
    let (s, rest) = rest.split_at(len);
    *b = rest;
    Some(s)
}

fn rsa_blob(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    put_string(&mut b, b"ssh-rsa");
    put_string(&mut b, &mpint(e));
    put_string(&mut b, &mpint(n));
    b
}

fn ed25519_blob(pk: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    put_string(&mut b, b"ssh-ed25519");
    put_string(&mut b, pk);
    b
}

fn colon_hex(d: &[u8]) -> String {
    d.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// ED25519 keys, created or imported: base64 SHA-256 of the public key
/// blob (what `ssh-keygen -l` prints, with padding).
fn ed25519_fingerprint(blob: &[u8]) -> String {
    use sha2::Digest;
    B64.encode(sha2::Sha256::digest(blob))
}

fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (line, r) = rest.split_at(rest.len().min(width));
        out.push_str(line);
        out.push('\n');
        rest = r;
    }
    out
}

fn pem(label: &str, der: &[u8]) -> String {
    format!(
        "-----BEGIN {label}-----\n{}-----END {label}-----",
        wrap(&B64.encode(der), 64)
    )
}

/// Generate a key pair. `key_type` is `rsa` (2048 bits) or `ed25519`;
/// `format` is `pem` or `ppk`; `name` becomes the key's comment.
pub fn generate(key_type: &str, format: &str, name: &str) -> Result<Created> {
    match key_type {
        "rsa" => generate_rsa(format, name),
        "ed25519" => generate_ed25519(format, name),
        other => Err(ServiceError::InvalidParameterValue(format!(
            "Value ({other}) for parameter keyType is invalid. Valid values: rsa, ed25519"
        ))),
    }
}

fn generate_rsa(format: &str, name: &str) -> Result<Created> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use sha1::Digest;
    let kp = KeyPair::generate(KeySize::Rsa2048).map_err(|_| internal("rsa"))?;
    let pkcs8 =
        AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&kp).map_err(|_| internal("pkcs8"))?;
    let pkcs8 = pkcs8.as_ref();
    let pkcs1 = pkcs8_inner(pkcs8).ok_or_else(|| internal("pkcs1"))?;
    let ints = der_integers(pkcs1).ok_or_else(|| internal("integers"))?;
    let [_, n, e, d, p, q, _, _, qinv] = ints.as_slice() else {
        return Err(internal("rsa fields"));
    };
    let blob = rsa_blob(n, e);
    let public = PublicKey {
        key_type: "rsa",
        openssh: format!("ssh-rsa {}", B64.encode(&blob)),
        // Keys EC2 creates: SHA-1 of the PKCS#8 private key.
        fingerprint: colon_hex(&sha1::Sha1::digest(pkcs8)),
    };
    let material = match format {
        "pem" => pem("RSA PRIVATE KEY", pkcs1),
        _ => {
            let mut private = Vec::new();
            for v in [d, p, q, qinv] {
                put_string(&mut private, &mpint(v));
            }
            ppk("ssh-rsa", name, &blob, &private)
        }
    };
    Ok(Created {
        public,
        material: SecretKey::new(material),
    })
}

fn generate_ed25519(format: &str, name: &str) -> Result<Created> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    let kp = Ed25519KeyPair::generate().map_err(|_| internal("ed25519"))?;
    let pk = kp.public_key().as_ref().to_vec();
    let pkcs8 =
        AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&kp).map_err(|_| internal("pkcs8"))?;
    // PKCS#8 v1 ends with the 32-byte seed.
    let der = pkcs8.as_ref();
    let seed = der
        .get(der.len().saturating_sub(32)..)
        .filter(|s| s.len() == 32)
        .ok_or_else(|| internal("seed"))?;
    let blob = ed25519_blob(&pk);
    let public = PublicKey {
        key_type: "ed25519",
        openssh: format!("ssh-ed25519 {}", B64.encode(&blob)),
        fingerprint: ed25519_fingerprint(&blob),
    };
    let material = match format {
        "pem" => openssh_ed25519(&blob, &pk, seed, name),
        _ => {
            let mut private = Vec::new();
            put_string(&mut private, seed);
            ppk("ssh-ed25519", name, &blob, &private)
        }
    };
    Ok(Created {
        public,
        material: SecretKey::new(material),
    })
}

/// `-----BEGIN OPENSSH PRIVATE KEY-----`, unencrypted, as EC2 gives
/// ED25519 keys.
fn openssh_ed25519(blob: &[u8], pk: &[u8], seed: &[u8], comment: &str) -> String {
    let check = u32::from_be_bytes(crate::crypto::random_bytes::<4>());
    let mut private = Vec::new();
    private.extend(check.to_be_bytes());
    private.extend(check.to_be_bytes());
    put_string(&mut private, b"ssh-ed25519");
    put_string(&mut private, pk);
    put_string(&mut private, &[seed, pk].concat());
    put_string(&mut private, comment.as_bytes());
    let mut pad = 1u8;
    while private.len() % 8 != 0 {
        private.push(pad);
        pad += 1;
    }
    let mut out = b"openssh-key-v1\0".to_vec();
    put_string(&mut out, b"none");
    put_string(&mut out, b"none");
    put_string(&mut out, b"");
    out.extend(1u32.to_be_bytes());
    put_string(&mut out, blob);
    put_string(&mut out, &private);
    format!(
        "-----BEGIN OPENSSH PRIVATE KEY-----\n{}-----END OPENSSH PRIVATE KEY-----",
        wrap(&B64.encode(out), 70)
    )
}

/// PuTTY's key file (version 2, unencrypted) with its MAC.
fn ppk(alg: &str, comment: &str, public: &[u8], private: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    use sha1::Digest;
    let key = sha1::Sha1::digest(b"putty-private-key-file-mac-key");
    let mut data = Vec::new();
    for s in [alg.as_bytes(), b"none", comment.as_bytes(), public, private] {
        put_string(&mut data, s);
    }
    let mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(&key)
        .map(|mut m| {
            m.update(&data);
            hex::encode(m.finalize().into_bytes())
        })
        .unwrap_or_default();
    let lines = |b: &[u8]| {
        let w = wrap(&B64.encode(b), 64);
        (w.lines().count(), w)
    };
    let (pn, pub_text) = lines(public);
    let (qn, priv_text) = lines(private);
    format!(
        "PuTTY-User-Key-File-2: {alg}\nEncryption: none\nComment: {comment}\nPublic-Lines: {pn}\n{pub_text}Private-Lines: {qn}\n{priv_text}Private-MAC: {mac}\n"
    )
}

/// RSA key sizes ImportKeyPair accepts.
const RSA_BITS: &[usize] = &[1024, 2048, 4096];

/// Read an imported public key: an OpenSSH line (`ssh-rsa AAAA… comment`)
/// or an RFC 4716 block (`---- BEGIN SSH2 PUBLIC KEY ----`).
pub fn import(material: &[u8]) -> Result<PublicKey> {
    let text = std::str::from_utf8(material).map_err(|_| invalid_format())?;
    let blob = if text
        .trim_start()
        .starts_with("---- BEGIN SSH2 PUBLIC KEY ----")
    {
        rfc4716_blob(text)?
    } else {
        let mut parts = text.split_whitespace();
        let kind = parts.next().ok_or_else(invalid_format)?;
        let b64 = parts.next().ok_or_else(invalid_format)?;
        let blob = B64.decode(b64).map_err(|_| invalid_format())?;
        let mut r = blob.as_slice();
        if read_string(&mut r) != Some(kind.as_bytes()) {
            return Err(invalid_format());
        }
        blob
    };
    public_from_blob(&blob)
}

fn rfc4716_blob(text: &str) -> Result<Vec<u8>> {
    let mut b64 = String::new();
    let mut continued = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with("----") {
            continue;
        }
        // Header lines (`Comment: …`), possibly continued with `\`.
        if continued || line.contains(':') {
            continued = line.ends_with('\\');
            continue;
        }
        b64.push_str(line);
    }
    B64.decode(b64).map_err(|_| invalid_format())
}

fn public_from_blob(blob: &[u8]) -> Result<PublicKey> {
    let mut r = blob;
    let kind = read_string(&mut r).ok_or_else(invalid_format)?;
    match kind {
        b"ssh-rsa" => {
            let e = read_string(&mut r).ok_or_else(invalid_format)?;
            let n = read_string(&mut r).ok_or_else(invalid_format)?;
            let n_trim: Vec<u8> = n.iter().copied().skip_while(|&b| b == 0).collect();
            let bits = n_trim
                .first()
                .map_or(0, |&b| n_trim.len() * 8 - b.leading_zeros() as usize);
            if !r.is_empty() || e.is_empty() || !RSA_BITS.contains(&bits) {
                return Err(invalid_format());
            }
            Ok(PublicKey {
                key_type: "rsa",
                openssh: format!("ssh-rsa {}", B64.encode(blob)),
                // Imported RSA keys: MD5 of the DER public key.
                fingerprint: colon_hex(&md5::compute(rsa_spki(n, e)).0),
            })
        }
        b"ssh-ed25519" => {
            let pk = read_string(&mut r).ok_or_else(invalid_format)?;
            if pk.len() != 32 || !r.is_empty() {
                return Err(invalid_format());
            }
            Ok(PublicKey {
                key_type: "ed25519",
                openssh: format!("ssh-ed25519 {}", B64.encode(blob)),
                fingerprint: ed25519_fingerprint(blob),
            })
        }
        _ => Err(invalid_format()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_rsa_reimports_with_the_same_public_key() {
        let c = generate("rsa", "pem", "k").unwrap();
        assert!(
            c.material
                .expose()
                .starts_with("-----BEGIN RSA PRIVATE KEY-----")
        );
        assert_eq!(c.public.fingerprint.len(), 59);
        let again = import(c.public.openssh.as_bytes()).unwrap();
        assert_eq!(again.openssh, c.public.openssh);
        // Imported: MD5, 16 bytes.
        assert_eq!(again.fingerprint.len(), 47);
    }

    #[test]
    fn ed25519_fingerprints_agree_between_create_and_import() {
        let c = generate("ed25519", "pem", "k").unwrap();
        assert!(
            c.material
                .expose()
                .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
        );
        let again = import(format!("{} me@host", c.public.openssh).as_bytes()).unwrap();
        assert_eq!(again.fingerprint, c.public.fingerprint);
        assert!(c.public.fingerprint.ends_with('='));
    }

    #[test]
    fn ppk_has_a_mac() {
        let c = generate("ed25519", "ppk", "k").unwrap();
        assert!(
            c.material
                .expose()
                .starts_with("PuTTY-User-Key-File-2: ssh-ed25519")
        );
        assert!(c.material.expose().contains("Private-MAC: "));
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            &b"ssh-rsa"[..],
            b"ssh-rsa !!!",
            b"ssh-ed25519 AAAA",
            b"\xff\xfe",
            b"",
        ] {
            assert!(import(bad).is_err());
        }
        // A blob whose type disagrees with the line's.
        let c = generate("ed25519", "pem", "k").unwrap();
        let body = c.public.openssh.split(' ').nth(1).unwrap();
        assert!(import(format!("ssh-rsa {body}").as_bytes()).is_err());
    }

    #[test]
    fn der_lengths_roundtrip() {
        let long = vec![7u8; 300];
        let enc = der(0x04, &long);
        let (tag, content, rest) = der_next(&enc).unwrap();
        assert_eq!((tag, content.len(), rest.len()), (0x04, 300, 0));
    }
}
