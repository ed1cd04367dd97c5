//! The instance identity document and its signature. AWS signs with its
//! own RSA certificate; keycard signs with an Ed25519 key derived from
//! master.key, whose public half `keycard identity-key` prints, so a
//! workload can prove which instance it runs on to a verifier that trusts
//! this keycard.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer, SigningKey};
use keycard_services::Keycard;
use keycard_services::ec2::Instance;
use keycard_services::sts::iso8601;

pub const KEY_LABEL: &str = "keycard instance identity document key v1";

fn signing_key(kc: &Keycard) -> SigningKey {
    SigningKey::from_bytes(&kc.mac(KEY_LABEL, b""))
}

/// The public key from a data directory's master.key (PEM).
pub fn public_key_pem_from_dir(dir: &std::path::Path) -> std::io::Result<String> {
    let seed = keycard_services::delivery::mac_from_data_dir(dir, KEY_LABEL, b"")?;
    Ok(pem(&SigningKey::from_bytes(&seed)))
}

/// The document, in AWS's layout (two-space indent, `" : "`).
pub fn document(i: &Instance) -> String {
    let s = |v: &str| serde_json::to_string(v).unwrap_or_else(|_| "\"\"".into());
    let fields: Vec<(&str, String)> = vec![
        ("accountId", s(&i.account)),
        ("architecture", s("x86_64")),
        ("availabilityZone", s(&i.availability_zone())),
        ("billingProducts", "null".into()),
        ("devpayProductCodes", "null".into()),
        ("marketplaceProductCodes", "null".into()),
        ("imageId", s(&i.image_id)),
        ("instanceId", s(&i.id)),
        ("instanceType", s(&i.instance_type)),
        ("kernelId", "null".into()),
        ("pendingTime", s(&iso8601(i.launch_time))),
        ("privateIp", s(i.private_ip.as_deref().unwrap_or(""))),
        ("ramdiskId", "null".into()),
        ("region", s(&i.region)),
        ("version", s("2017-09-30")),
    ];
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("  \"{k}\" : {v}"))
        .collect();
    format!("{{\n{}\n}}", body.join(",\n"))
}

/// Base64 Ed25519 signature over the document bytes.
pub fn signature(kc: &Keycard, doc: &str) -> String {
    B64.encode(signing_key(kc).sign(doc.as_bytes()).to_bytes())
}

/// The verifying key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo), which
/// `openssl pkeyutl -verify -pubin -rawin` and common libraries accept.
pub fn public_key_pem(kc: &Keycard) -> String {
    pem(&signing_key(kc))
}

fn pem(key: &SigningKey) -> String {
    // SPKI prefix for id-Ed25519 (RFC 8410) followed by the 32 key bytes.
    let mut der = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    der.extend_from_slice(key.verifying_key().as_bytes());
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        B64.encode(der)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use keycard_services::ec2::{Instance, MetadataOptions};

    #[test]
    fn document_is_json_with_aws_fields() {
        let i = Instance {
            id: "i-0123456789abcdef0".into(),
            account: "123456789012".into(),
            state: "running".into(),
            profile: None,
            private_ip: Some("172.31.16.1".into()),
            region: "eu-west-1".into(),
            image_id: "ami-12345678".into(),
            instance_type: "t3.micro".into(),
            key_name: None,
            public_key: None,
            launch_time: 0,
            reservation_id: "r-1".into(),
            launch_index: 0,
            user_data: None,
            tags: vec![],
            metadata: MetadataOptions::default(),
            slot: 1,
            client_token: None,
            node: None,
            state_reason: None,
            network: None,
            imds: Default::default(),
            attrs: Default::default(),
        };
        let d = document(&i);
        let v: serde_json::Value = serde_json::from_str(&d).unwrap();
        assert_eq!(v["instanceId"], "i-0123456789abcdef0");
        assert_eq!(v["availabilityZone"], "eu-west-1a");
        assert_eq!(v["version"], "2017-09-30");
        assert!(v["kernelId"].is_null());
    }
}
