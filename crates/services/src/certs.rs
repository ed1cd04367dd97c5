//! Just enough DER, PEM and OpenSSH key parsing for IAM's uploaded
//! credentials: X.509 certificates (validity, public key), private keys
//! (to check they match the certificate), SSH public keys (fingerprint,
//! SSH and PEM encodings). No signature checking: IAM does none either.

use base64::Engine;

use crate::error::{Result, ServiceError};
use crate::model::Epoch;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// One DER element: its tag, its content, and what follows it.
fn tlv(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        (
            bytes.iter().fold(0usize, |a, b| (a << 8) | usize::from(*b)),
            rest,
        )
    };
    if rest.len() < len {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    Some((tag, content, rest))
}

/// The content of an element that must have `tag`, and what follows.
fn expect(buf: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, c, rest) = tlv(buf)?;
    (t == tag).then_some((c, rest))
}

/// An INTEGER's magnitude without leading zero bytes.
fn unsigned(int: &[u8]) -> &[u8] {
    let skip = int.iter().take_while(|b| **b == 0).count();
    int.get(skip..).unwrap_or_default()
}

/// A DER element built from its tag and content.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A positive INTEGER from big-endian magnitude bytes.
fn der_uint(magnitude: &[u8]) -> Vec<u8> {
    let m = unsigned(magnitude);
    let mut c = Vec::with_capacity(m.len() + 1);
    if m.first().is_none_or(|b| *b & 0x80 != 0) {
        c.push(0);
    }
    c.extend_from_slice(m);
    der(0x02, &c)
}

/// The DER blocks of a PEM text whose label is one of `labels`, in order.
pub fn pem_blocks(text: &str, labels: &[&str]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let body: String = lines
            .by_ref()
            .take_while(|l| *l != end)
            .filter(|l| !l.contains(':'))
            .collect();
        if labels.contains(&label)
            && let Ok(bytes) = B64.decode(body.as_bytes())
        {
            out.push((label.to_string(), bytes));
        }
    }
    out
}

/// What IAM needs from an X.509 certificate.
#[derive(Debug, Clone)]
pub struct Certificate {
    /// The whole certificate, DER.
    pub der: Vec<u8>,
    pub not_before: Epoch,
    pub not_after: Epoch,
    /// The subjectPublicKeyInfo's algorithm OID and key bits.
    pub key_alg: Vec<u8>,
    pub key: Vec<u8>,
}

fn malformed(m: &str) -> ServiceError {
    ServiceError::MalformedCertificate(m.into())
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn asn1_time(tag: u8, c: &[u8]) -> Option<Epoch> {
    let s = std::str::from_utf8(c).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i32 = s.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, s.get(2..)?)
        }
        0x18 => (s.get(..4)?.parse().ok()?, s.get(4..)?),
        _ => return None,
    };
    let n = |i: usize| -> Option<u8> { rest.get(i..i + 2)?.parse().ok() };
    let date =
        time::Date::from_calendar_date(year, time::Month::try_from(n(0)?).ok()?, n(2)?).ok()?;
    let t = time::Time::from_hms(n(4)?, n(6)?, n(8)?).ok()?;
    Some(
        time::PrimitiveDateTime::new(date, t)
            .assume_utc()
            .unix_timestamp(),
    )
}

/// Parse one DER certificate.
pub fn certificate_der(der_bytes: &[u8]) -> Option<Certificate> {
    let (cert, _) = expect(der_bytes, 0x30)?;
    let (tbs, _) = expect(cert, 0x30)?;
    let mut rest = tbs;
    if let Some((0xa0, _, r)) = tlv(rest) {
        rest = r;
    }
    let (_, rest) = expect(rest, 0x02)?; // serial
    let (_, rest) = expect(rest, 0x30)?; // signature algorithm
    let (_, rest) = expect(rest, 0x30)?; // issuer
    let (validity, rest) = expect(rest, 0x30)?;
    let (_, rest) = expect(rest, 0x30)?; // subject
    let (spki, _) = expect(rest, 0x30)?;
    let (t1, c1, v) = tlv(validity)?;
    let (t2, c2, _) = tlv(v)?;
    let (alg, bits) = expect(spki, 0x30)?;
    let (oid, _) = expect(alg, 0x06)?;
    let (key, _) = expect(bits, 0x03)?;
    Some(Certificate {
        der: der_bytes.to_vec(),
        not_before: asn1_time(t1, c1)?,
        not_after: asn1_time(t2, c2)?,
        key_alg: oid.to_vec(),
        key: key.get(1..)?.to_vec(),
    })
}

/// Every certificate of a PEM text (a body or a chain). A text with no
/// certificate, or one that does not parse, is malformed.
pub fn certificates(pem: &str) -> Result<Vec<Certificate>> {
    let blocks = pem_blocks(pem, &["CERTIFICATE"]);
    if blocks.is_empty() {
        return Err(malformed(
            "Unable to parse certificate. Please ensure the certificate is in PEM format.",
        ));
    }
    blocks
        .iter()
        .map(|(_, d)| {
            certificate_der(d).ok_or_else(|| {
                malformed(
                    "Unable to parse certificate. Please ensure the certificate is in PEM format.",
                )
            })
        })
        .collect()
}

/// The one certificate of a body, valid now.
pub fn certificate(pem: &str, now: Epoch) -> Result<Certificate> {
    let mut all = certificates(pem)?;
    if all.len() != 1 {
        return Err(malformed(
            "The certificate body must contain exactly one certificate.",
        ));
    }
    let c = all.remove(0);
    if c.not_after < now {
        return Err(malformed("The certificate is expired."));
    }
    Ok(c)
}

/// The RSA modulus of an RSAPublicKey or RSAPrivateKey (PKCS#1).
fn rsa_modulus(pkcs1: &[u8], private: bool) -> Option<Vec<u8>> {
    let (seq, _) = expect(pkcs1, 0x30)?;
    let seq = if private { expect(seq, 0x02)?.1 } else { seq };
    let (n, _) = expect(seq, 0x02)?;
    Some(unsigned(n).to_vec())
}

/// The public key an ECPrivateKey carries (`[1] publicKey`), if any.
fn ec_public(sec1: &[u8]) -> Option<Vec<u8>> {
    let (seq, _) = expect(sec1, 0x30)?;
    let (_, rest) = expect(seq, 0x02)?;
    let (_, mut rest) = expect(rest, 0x04)?;
    while let Some((tag, c, r)) = tlv(rest) {
        if tag == 0xa1 {
            let (bits, _) = expect(c, 0x03)?;
            return bits.get(1..).map(<[u8]>::to_vec);
        }
        rest = r;
    }
    None
}

/// What a private key says of its public half.
enum KeyHalf {
    Rsa(Vec<u8>),
    Ec(Option<Vec<u8>>),
}

fn private_key_half(label: &str, der_bytes: &[u8]) -> Option<KeyHalf> {
    match label {
        "RSA PRIVATE KEY" => rsa_modulus(der_bytes, true).map(KeyHalf::Rsa),
        "EC PRIVATE KEY" => Some(KeyHalf::Ec(ec_public(der_bytes))),
        _ => {
            let (seq, _) = expect(der_bytes, 0x30)?;
            let (_, rest) = expect(seq, 0x02)?;
            let (alg, rest) = expect(rest, 0x30)?;
            let (oid, _) = expect(alg, 0x06)?;
            let (inner, _) = expect(rest, 0x04)?;
            if oid == OID_RSA {
                rsa_modulus(inner, true).map(KeyHalf::Rsa)
            } else if oid == OID_EC {
                Some(KeyHalf::Ec(ec_public(inner)))
            } else {
                None
            }
        }
    }
}

/// Check that `private_pem` is an unencrypted RSA or EC key whose public
/// half is the certificate's. An EC key without its public point cannot
/// be compared without curve arithmetic, and is accepted.
pub fn check_private_key(private_pem: &str, cert: &Certificate) -> Result<()> {
    let blocks = pem_blocks(
        private_pem,
        &["RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY"],
    );
    let Some((label, der_bytes)) = blocks.first() else {
        return Err(malformed(
            "Unable to parse private key. Please ensure the private key is an unencrypted key in PEM format.",
        ));
    };
    let half = private_key_half(label, der_bytes).ok_or_else(|| {
        malformed(
            "Unable to parse private key. Please ensure the private key is an unencrypted key in PEM format.",
        )
    })?;
    let matches = match half {
        KeyHalf::Rsa(n) => {
            cert.key_alg == OID_RSA && rsa_modulus(&cert.key, false).is_some_and(|m| m == n)
        }
        KeyHalf::Ec(point) => cert.key_alg == OID_EC && point.is_none_or(|p| p == cert.key),
    };
    if !matches {
        return Err(ServiceError::KeyPairMismatch(
            "The request was rejected because the public key certificate and the private key do not match.".into(),
        ));
    }
    Ok(())
}

// ------------------------------------------------------------------ SSH

/// A parsed SSH public key: its OpenSSH wire blob and key type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshPublicKey {
    pub kind: String,
    pub blob: Vec<u8>,
}

fn unrecognized() -> ServiceError {
    ServiceError::UnrecognizedPublicKeyEncoding(
        "The request was rejected because the public key encoding format is unsupported or unrecognized.".into(),
    )
}

fn invalid_key(m: &str) -> ServiceError {
    ServiceError::InvalidPublicKey(m.into())
}

/// One SSH wire string and what follows.
fn ssh_string(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    let s = buf.get(4..4 + len)?;
    Some((s, buf.get(4 + len..)?))
}

fn put_ssh_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// An SSH mpint from magnitude bytes (a leading zero when the top bit is set).
fn ssh_mpint(magnitude: &[u8]) -> Vec<u8> {
    let m = unsigned(magnitude);
    let mut v = Vec::with_capacity(m.len() + 1);
    if m.first().is_some_and(|b| b & 0x80 != 0) {
        v.push(0);
    }
    v.extend_from_slice(m);
    v
}

fn rsa_blob(e: &[u8], n: &[u8]) -> Vec<u8> {
    let mut blob = Vec::new();
    put_ssh_string(&mut blob, b"ssh-rsa");
    put_ssh_string(&mut blob, &ssh_mpint(e));
    put_ssh_string(&mut blob, &ssh_mpint(n));
    blob
}

/// RSA keys shorter than this are refused, as IAM refuses them.
const MIN_RSA_BITS: usize = 2048;

fn check_rsa(n: &[u8]) -> Result<()> {
    let n = unsigned(n);
    let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
    if bits < MIN_RSA_BITS {
        return Err(invalid_key(
            "The request was rejected because the public key is malformed or otherwise invalid. The minimum bit-length of the public key is 2048 bits.",
        ));
    }
    Ok(())
}

/// Validate a blob: its type string, and the key inside it.
fn ssh_from_blob(blob: Vec<u8>, declared: Option<&str>) -> Result<SshPublicKey> {
    let bad = || {
        invalid_key(
            "The request was rejected because the public key is malformed or otherwise invalid.",
        )
    };
    let (kind, rest) = ssh_string(&blob).ok_or_else(bad)?;
    let kind = std::str::from_utf8(kind).map_err(|_| bad())?.to_string();
    if declared.is_some_and(|d| d != kind) {
        return Err(bad());
    }
    match kind.as_str() {
        "ssh-rsa" => {
            let (_, rest) = ssh_string(rest).ok_or_else(bad)?;
            let (n, rest) = ssh_string(rest).ok_or_else(bad)?;
            if !rest.is_empty() {
                return Err(bad());
            }
            check_rsa(n)?;
        }
        "ssh-ed25519" => {
            let (k, rest) = ssh_string(rest).ok_or_else(bad)?;
            if k.len() != 32 || !rest.is_empty() {
                return Err(bad());
            }
        }
        _ => return Err(unrecognized()),
    }
    Ok(SshPublicKey { kind, blob })
}

/// A key from a PEM SubjectPublicKeyInfo or PKCS#1 RSA public key.
fn ssh_from_pem(text: &str) -> Result<SshPublicKey> {
    let bad = || {
        invalid_key(
            "The request was rejected because the public key is malformed or otherwise invalid.",
        )
    };
    let blocks = pem_blocks(text, &["PUBLIC KEY", "RSA PUBLIC KEY"]);
    let (label, d) = blocks.first().ok_or_else(bad)?;
    let rsa = |pkcs1: &[u8]| -> Result<SshPublicKey> {
        let (seq, _) = expect(pkcs1, 0x30).ok_or_else(bad)?;
        let (n, rest) = expect(seq, 0x02).ok_or_else(bad)?;
        let (e, _) = expect(rest, 0x02).ok_or_else(bad)?;
        ssh_from_blob(rsa_blob(e, n), Some("ssh-rsa"))
    };
    if label == "RSA PUBLIC KEY" {
        return rsa(d);
    }
    let (spki, _) = expect(d, 0x30).ok_or_else(bad)?;
    let (alg, bits) = expect(spki, 0x30).ok_or_else(bad)?;
    let (oid, _) = expect(alg, 0x06).ok_or_else(bad)?;
    let (key, _) = expect(bits, 0x03).ok_or_else(bad)?;
    let key = key.get(1..).ok_or_else(bad)?;
    if oid == OID_RSA {
        rsa(key)
    } else if oid == OID_ED25519 {
        let mut blob = Vec::new();
        put_ssh_string(&mut blob, b"ssh-ed25519");
        put_ssh_string(&mut blob, key);
        ssh_from_blob(blob, Some("ssh-ed25519"))
    } else {
        Err(unrecognized())
    }
}

/// Parse an uploaded SSH public key: OpenSSH (`ssh-rsa AAAA… comment`)
/// or PEM.
pub fn ssh_public_key(text: &str) -> Result<SshPublicKey> {
    let t = text.trim();
    if t.starts_with("-----BEGIN") {
        return ssh_from_pem(t);
    }
    let mut parts = t.split_whitespace();
    let (Some(kind), Some(b64)) = (parts.next(), parts.next()) else {
        return Err(unrecognized());
    };
    if !matches!(kind, "ssh-rsa" | "ssh-ed25519") {
        return Err(unrecognized());
    }
    let blob = B64.decode(b64).map_err(|_| {
        invalid_key(
            "The request was rejected because the public key is malformed or otherwise invalid.",
        )
    })?;
    ssh_from_blob(blob, Some(kind))
}

impl SshPublicKey {
    /// MD5 of the blob as colon-separated hex, as IAM gives it.
    pub fn fingerprint(&self) -> String {
        let d = md5::compute(&self.blob);
        d.0.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// OpenSSH one-line form.
    pub fn openssh(&self) -> String {
        format!("{} {}", self.kind, B64.encode(&self.blob))
    }

    /// PEM SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`).
    pub fn pem(&self) -> String {
        let spki = self.spki().unwrap_or_default();
        let b64 = B64.encode(spki);
        let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(chunk));
            out.push('\n');
        }
        out.push_str("-----END PUBLIC KEY-----\n");
        out
    }

    fn spki(&self) -> Option<Vec<u8>> {
        let (_, rest) = ssh_string(&self.blob)?;
        let (alg, key) = if self.kind == "ssh-rsa" {
            let (e, rest) = ssh_string(rest)?;
            let (n, _) = ssh_string(rest)?;
            let mut rsa = der_uint(n);
            rsa.extend(der_uint(e));
            let mut alg = der(0x06, OID_RSA);
            alg.extend([0x05, 0x00]);
            (alg, der(0x30, &rsa))
        } else {
            let (k, _) = ssh_string(rest)?;
            (der(0x06, OID_ED25519), k.to_vec())
        };
        let mut bits = vec![0u8];
        bits.extend(key);
        let mut body = der(0x30, &alg);
        body.extend(der(0x03, &bits));
        Some(der(0x30, &body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGfScTy7GAc/6SeEnxWruJCnDtMRsaHe8o8bErGxVOTm test";

    #[test]
    fn ssh_fingerprint_is_ssh_keygens_md5() {
        let k = ssh_public_key(ED).unwrap();
        assert_eq!(
            k.fingerprint(),
            "ba:c3:aa:cc:62:cc:7f:01:7b:85:c9:27:b0:e2:a7:ae"
        );
        // Through PEM and back: the same key.
        assert_eq!(ssh_public_key(&k.pem()).unwrap(), k);
    }

    #[test]
    fn ssh_refuses_garbage_and_unknown_types() {
        assert!(matches!(
            ssh_public_key("hello"),
            Err(ServiceError::UnrecognizedPublicKeyEncoding(_))
        ));
        assert!(matches!(
            ssh_public_key("ssh-rsa !!!"),
            Err(ServiceError::InvalidPublicKey(_))
        ));
        // Declared type and blob disagree.
        let body = ED.replace("ssh-ed25519", "ssh-rsa");
        assert!(matches!(
            ssh_public_key(&body),
            Err(ServiceError::InvalidPublicKey(_))
        ));
    }

    #[test]
    fn der_lengths_round_trip() {
        for n in [0usize, 1, 127, 128, 255, 256, 70000] {
            let e = der(0x04, &vec![7u8; n]);
            let (t, c, rest) = tlv(&e).unwrap();
            assert_eq!((t, c.len(), rest.len()), (0x04, n, 0));
        }
    }

    #[test]
    fn times() {
        assert_eq!(asn1_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(asn1_time(0x18, b"20000101000000Z"), Some(946_684_800));
        assert_eq!(asn1_time(0x17, b"701301000000Z"), None);
    }

    #[test]
    fn certificates_need_pem() {
        assert!(matches!(
            certificates("not a cert"),
            Err(ServiceError::MalformedCertificate(_))
        ));
    }
}
