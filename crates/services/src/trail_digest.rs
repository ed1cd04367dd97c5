//! CloudTrail log file integrity validation, as AWS does it: every digest
//! interval (an hour by default) a trail with validation on delivers, per
//! region, a gzipped digest file listing the log files delivered since the
//! last one with the SHA-256 of each (uncompressed), chained to the
//! previous digest and signed SHA256withRSA with the region's key. The
//! signature goes into the object's `x-amz-meta-signature`, so the
//! unmodified `aws cloudtrail validate-logs` checks keycard's trails.
//!
//! The signing keys are kept sealed in the store (one list per region);
//! a key signs for [`KEY_VALIDITY_S`] (AWS's published keys are valid a
//! day each), then the next digest makes a new one. `ListPublicKeys`
//! serves the public halves, PKCS#1 DER, as awscli reads them.

use std::io::Write as _;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::Keycard;
use crate::error::{Result, ServiceError};
use crate::sts::iso8601;
use crate::trails::Trail;

pub const SIGNATURE_ALGORITHM: &str = "SHA256withRSA";
const HASH_ALGORITHM: &str = "SHA-256";
/// How long one signing key signs before the next replaces it.
pub const KEY_VALIDITY_S: i64 = 86_400;
/// Keys kept (and listed) per region: a year and a bit of daily keys.
const KEYS_KEPT: usize = 400;

/// One log file a digest lists (the digest's `logFiles` entry).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LogFile {
    pub s3_bucket: String,
    pub s3_object: String,
    pub hash_value: String,
    pub hash_algorithm: String,
    pub newest_event_time: String,
    pub oldest_event_time: String,
}

impl LogFile {
    /// The entry for a log file body (uncompressed) and its records.
    pub fn of(bucket: &str, key: &str, body: &[u8], records: &[Value]) -> LogFile {
        let times: Vec<&str> = records
            .iter()
            .filter_map(|r| r.get("eventTime").and_then(Value::as_str))
            .collect();
        LogFile {
            s3_bucket: bucket.into(),
            s3_object: key.into(),
            hash_value: sha256_hex(body),
            hash_algorithm: HASH_ALGORITHM.into(),
            newest_event_time: times
                .iter()
                .max()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            oldest_event_time: times
                .iter()
                .min()
                .map(|s| s.to_string())
                .unwrap_or_default(),
        }
    }
}

/// The digest a chain continues from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PreviousDigest {
    pub bucket: String,
    pub key: String,
    /// SHA-256 (hex) of its uncompressed content.
    pub hash: String,
    /// Its signature (hex).
    pub signature: String,
}

/// One region's digest chain: where the next digest's period starts, the
/// digest before it, and the log files delivered since.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct DigestChain {
    /// Epoch seconds.
    pub start: i64,
    pub previous: Option<PreviousDigest>,
    pub files: Vec<LogFile>,
}

impl DigestChain {
    pub fn starting(at: i64) -> DigestChain {
        DigestChain {
            start: at,
            ..DigestChain::default()
        }
    }
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// `YYYY/MM/DD` and `YYYYMMDDTHHMMSSZ` of an epoch second.
fn day_and_stamp(secs: i64) -> (String, String) {
    let t =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let (y, m, d) = (t.year(), u8::from(t.month()), t.day());
    (
        format!("{y:04}/{m:02}/{d:02}"),
        format!(
            "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
            t.hour(),
            t.minute(),
            t.second()
        ),
    )
}

/// The digest's S3 key, as AWS names it (the time is the digest's end).
pub fn digest_key(t: &Trail, region: &str, end: i64) -> String {
    let (day, stamp) = day_and_stamp(end);
    let base = t
        .prefix
        .as_ref()
        .map(|p| format!("{p}/"))
        .unwrap_or_default();
    format!(
        "{base}AWSLogs/{acct}/CloudTrail-Digest/{region}/{day}/{acct}_CloudTrail-Digest_{region}_{name}_{home}_{stamp}.json.gz",
        acct = t.account,
        name = t.name,
        home = t.region,
    )
}

/// The digest document (AWS's field names; null event times and no
/// previous digest are JSON nulls, as AWS writes them).
fn digest_document(
    t: &Trail,
    chain: &DigestChain,
    key: &str,
    end: i64,
    fingerprint: &str,
) -> Value {
    let newest = chain
        .files
        .iter()
        .map(|f| f.newest_event_time.as_str())
        .max();
    let oldest = chain
        .files
        .iter()
        .map(|f| f.oldest_event_time.as_str())
        .min();
    let prev = chain.previous.as_ref();
    json!({
        "awsAccountId": t.account,
        "digestStartTime": iso8601(chain.start),
        "digestEndTime": iso8601(end),
        "digestS3Bucket": t.bucket,
        "digestS3Object": key,
        "digestPublicKeyFingerprint": fingerprint,
        "digestSignatureAlgorithm": SIGNATURE_ALGORITHM,
        "newestEventTime": newest,
        "oldestEventTime": oldest,
        "previousDigestS3Bucket": prev.map(|p| &p.bucket),
        "previousDigestS3Object": prev.map(|p| &p.key),
        "previousDigestHashValue": prev.map(|p| &p.hash),
        "previousDigestHashAlgorithm": prev.map(|_| HASH_ALGORITHM),
        "previousDigestSignature": prev.map(|p| &p.signature),
        "logFiles": chain.files,
    })
}

/// The documented data signing string: end time, the digest's S3 path,
/// the hex SHA-256 of its content, the previous signature (or `null`).
pub fn string_to_sign(
    end_time: &str,
    bucket: &str,
    key: &str,
    hash: &str,
    prev: Option<&str>,
) -> String {
    format!(
        "{end_time}\n{bucket}/{key}\n{hash}\n{}",
        prev.unwrap_or("null")
    )
}

// ------------------------------------------------------------ signing keys

/// A signing key as stored (the region's list is sealed as a whole).
#[derive(Serialize, Deserialize)]
struct StoredKey {
    /// PKCS#8 DER, base64.
    pkcs8: String,
    /// Validity, epoch seconds.
    start: i64,
    end: i64,
}

/// A public key as `ListPublicKeys` serves it.
#[derive(Debug, Clone, PartialEq)]
pub struct PublicKey {
    /// PKCS#1 `RSAPublicKey`, DER.
    pub der: Vec<u8>,
    pub start: i64,
    pub end: i64,
    /// Hex MD5 of the DER, the digests' `digestPublicKeyFingerprint`.
    pub fingerprint: String,
}

fn meta_key(region: &str) -> String {
    format!("cloudtrail_digest_keys/{region}")
}

fn internal(m: &str) -> ServiceError {
    ServiceError::Internal(m.into())
}

fn key_pair(k: &StoredKey) -> Result<RsaKeyPair> {
    let der = STANDARD
        .decode(&k.pkcs8)
        .map_err(|_| internal("digest key is not base64"))?;
    RsaKeyPair::from_pkcs8(&der).map_err(|_| internal("digest key does not parse"))
}

fn public_of(k: &StoredKey) -> Result<PublicKey> {
    let der = key_pair(k)?.public_key().as_ref().to_vec();
    Ok(PublicKey {
        fingerprint: format!("{:x}", md5::compute(&der)),
        der,
        start: k.start,
        end: k.end,
    })
}

async fn new_key(start: i64) -> Result<StoredKey> {
    let pkcs8 = tokio::task::spawn_blocking(|| {
        let kp = RsaKeyPair::generate(KeySize::Rsa2048).ok()?;
        Some(STANDARD.encode(kp.as_der().ok()?.as_ref()))
    })
    .await
    .map_err(|e| internal(&e.to_string()))?
    .ok_or_else(|| internal("digest key generation failed"))?;
    Ok(StoredKey {
        pkcs8,
        start,
        end: start + KEY_VALIDITY_S,
    })
}

impl Keycard {
    async fn digest_keys(&self, region: &str) -> Result<Vec<StoredKey>> {
        let meta = meta_key(region);
        let Some(sealed) = self.store().get_meta(&meta).await? else {
            return Ok(Vec::new());
        };
        let plain = self
            .master()
            .open(&sealed, meta.as_bytes())
            .ok_or_else(|| internal("digest keys do not open"))?;
        serde_json::from_slice(&plain).map_err(|_| internal("digest keys are corrupt"))
    }

    async fn save_digest_keys(&self, region: &str, keys: &[StoredKey]) -> Result<()> {
        let meta = meta_key(region);
        let plain = serde_json::to_vec(keys).map_err(|e| internal(&e.to_string()))?;
        let sealed = self.master().seal(&plain, meta.as_bytes());
        self.store().put_meta(&meta, &sealed).await?;
        Ok(())
    }

    /// Retire the region's current key now and start a new one (also done
    /// when the current key's validity runs out). Returns the new key's
    /// fingerprint.
    pub async fn rotate_digest_key(&self, region: &str) -> Result<String> {
        let now = crate::now();
        let mut keys = self.digest_keys(region).await?;
        if let Some(last) = keys.last_mut() {
            last.end = last.end.min(now);
        }
        let k = new_key(now).await?;
        let fingerprint = public_of(&k)?.fingerprint;
        keys.push(k);
        let drop = keys.len().saturating_sub(KEYS_KEPT);
        keys.drain(..drop);
        self.save_digest_keys(region, &keys).await?;
        Ok(fingerprint)
    }

    /// The key that signs now: the region's newest while valid, else a
    /// new one.
    async fn signing_key(&self, region: &str) -> Result<(RsaKeyPair, String)> {
        let now = crate::now();
        let mut keys = self.digest_keys(region).await?;
        if keys.last().is_none_or(|k| k.end <= now) {
            self.rotate_digest_key(region).await?;
            keys = self.digest_keys(region).await?;
        }
        let current = keys
            .last()
            .ok_or_else(|| internal("no digest signing key"))?;
        Ok((key_pair(current)?, public_of(current)?.fingerprint))
    }

    /// The region's public keys valid at some point in `[start, end]`
    /// (ListPublicKeys). The delivering node makes the first key when
    /// there is none, so a caller always sees the key that signs next.
    pub async fn digest_public_keys(&self, start: i64, end: i64) -> Result<Vec<PublicKey>> {
        let region = self.config.region.clone();
        if self.digest_keys(&region).await?.is_empty() && self.delivers_trails() {
            self.signing_key(&region).await?;
        }
        self.digest_keys(&region)
            .await?
            .iter()
            .filter(|k| k.start <= end && k.end >= start)
            .map(public_of)
            .collect()
    }

    /// Deliver the digest of `region`'s chain ending now; on success the
    /// chain continues from it. Err is the delivery error text.
    pub(crate) async fn deliver_digest(
        &self,
        t: &Trail,
        region: &str,
        chain: &mut DigestChain,
        end: i64,
    ) -> std::result::Result<(), String> {
        let (kp, fingerprint) = self
            .signing_key(&self.config.region)
            .await
            .map_err(|e| e.to_string())?;
        let key = digest_key(t, region, end);
        let doc = digest_document(t, chain, &key, end, &fingerprint);
        let body = serde_json::to_vec(&doc).map_err(|e| e.to_string())?;
        let hash = sha256_hex(&body);
        let to_sign = string_to_sign(
            &iso8601(end),
            &t.bucket,
            &key,
            &hash,
            chain.previous.as_ref().map(|p| p.signature.as_str()),
        );
        let mut sig = vec![0u8; kp.public_modulus_len()];
        kp.sign(
            &signature::RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            to_sign.as_bytes(),
            &mut sig,
        )
        .map_err(|_| "signing failed".to_string())?;
        let signature = hex::encode(&sig);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&body).map_err(|e| e.to_string())?;
        let data = gz.finish().map_err(|e| e.to_string())?;
        let metadata = [
            ("signature".to_string(), signature.clone()),
            (
                "signature-algorithm".to_string(),
                SIGNATURE_ALGORITHM.to_string(),
            ),
        ]
        .into_iter()
        .collect();
        self.put_trail_object(t, &key, &data, metadata).await?;
        *chain = DigestChain {
            start: end,
            previous: Some(PreviousDigest {
                bucket: t.bucket.clone(),
                key,
                hash,
                signature,
            }),
            files: Vec::new(),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_keys_follow_aws_layout() {
        let t = crate::trails::tests::trail();
        // 2015-08-17T15:01:31Z
        let key = digest_key(&t, "us-east-1", 1_439_823_691);
        assert_eq!(
            key,
            "AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2015/08/17/123456789012_CloudTrail-Digest_us-east-1_t_us-east-1_20150817T150131Z.json.gz"
        );
    }

    #[test]
    fn signing_string_is_the_documented_one() {
        assert_eq!(
            string_to_sign("2015-08-17T15:01:31Z", "b", "k.json.gz", "ab", None),
            "2015-08-17T15:01:31Z\nb/k.json.gz\nab\nnull"
        );
    }

    #[test]
    fn first_digest_has_null_links_and_event_times() {
        let t = crate::trails::tests::trail();
        let doc = digest_document(&t, &DigestChain::starting(0), "k", 3600, "fp");
        for f in [
            "previousDigestS3Bucket",
            "previousDigestSignature",
            "newestEventTime",
            "oldestEventTime",
        ] {
            assert_eq!(doc[f], Value::Null, "{f}");
        }
        assert_eq!(doc["logFiles"], json!([]));
        assert_eq!(doc["digestEndTime"], "1970-01-01T01:00:00Z");
    }
}
