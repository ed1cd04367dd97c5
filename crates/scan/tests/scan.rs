//! The scanner's rules on real-looking credentials and known false positives.

use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use keycard_scan::{Kind, Layer, account_from_key_id, scan_bytes, scan_text};
use proptest::prelude::*;

const ACCOUNT: &str = "123456789012";

fn key_id(prefix: &str, seed: u8) -> String {
    let random: Vec<u8> = (0..16)
        .map(|i| seed.wrapping_mul(31).wrapping_add(i * 7))
        .collect();
    keycard_proto::ids::access_key_id(prefix, ACCOUNT, &random)
}

fn secret(seed: u8) -> String {
    let mut r = [0u8; 30];
    for (i, b) in r.iter_mut().enumerate() {
        *b = seed
            .wrapping_mul(97)
            .wrapping_add((i as u8).wrapping_mul(53))
            ^ 0x5a;
    }
    keycard_proto::ids::secret_access_key(&r)
}

fn kinds(text: &str) -> Vec<Kind> {
    scan_text(text).iter().map(|m| m.kind).collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

#[test]
fn account_decoding_matches_trufflehog_and_keycard_ids() {
    // trufflehog's documented example.
    assert_eq!(
        account_from_key_id("ASIAY34FZKBOKMUTVV7A").as_deref(),
        Some("609629065308")
    );
    for seed in 0..50 {
        assert_eq!(
            account_from_key_id(&key_id("AKIA", seed)).as_deref(),
            Some(ACCOUNT)
        );
    }
    assert_eq!(account_from_key_id("AKIA1234567890123456"), None);
    assert_eq!(account_from_key_id("AKIAshort"), None);
}

#[test]
fn credentials_file_pair_is_found_and_redacted() {
    let (id, sk) = (key_id("AKIA", 1), secret(1));
    let text = format!("[default]\naws_access_key_id = {id}\naws_secret_access_key = {sk}\n");
    let ms = scan_text(&text);
    assert_eq!(ms.len(), 2, "{ms:?}");
    let idm = ms.iter().find(|m| m.kind == Kind::AccessKeyId).expect("id");
    assert_eq!((idm.line, idm.column), (2, 21));
    assert_eq!(idm.key_id.as_deref(), Some(id.as_str()));
    assert_eq!(idm.account.as_deref(), Some(ACCOUNT));
    assert!(idm.paired);
    let sm = ms
        .iter()
        .find(|m| m.kind == Kind::SecretAccessKey)
        .expect("secret");
    assert_eq!(&text[sm.start..sm.end], sk);
    assert_eq!(sm.key_id.as_deref(), Some(id.as_str()));
    assert_eq!(sm.preview, format!("{}…", &sk[..4]));
    assert!(!format!("{ms:?}").contains(&sk));
}

#[test]
fn secret_without_id_needs_aws_context() {
    let sk = secret(2);
    assert_eq!(
        kinds(&format!("export AWS_SECRET_ACCESS_KEY={sk}\n")),
        vec![Kind::SecretAccessKey]
    );
    assert_eq!(kinds(&format!("checksum: {sk}\n")), vec![]);
    // The context must be on the secret's line.
    assert_eq!(kinds(&format!("aws key below\n{sk}\n")), vec![]);
}

#[test]
fn documentation_examples_and_placeholders_are_allowed() {
    let text = "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n\
                aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n\
                aws_access_key_id = AKIAXXXXXXXXXXXXXXXX\n\
                aws_secret_access_key = xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n\
                aws_secret_access_key = 0123456789abcdef0123456789abcdef01234567\n";
    assert_eq!(kinds(text), vec![]);
}

#[test]
fn word_boundaries_and_non_key_prefixes() {
    let id = key_id("AKIA", 3);
    assert_eq!(kinds(&format!("x{id}")), vec![]);
    assert_eq!(kinds(&format!("{id}0")), vec![]);
    assert_eq!(kinds(&format!("_{id}")), vec![]);
    assert_eq!(kinds(&format!("\"{id}\"")), vec![Kind::AccessKeyId]);
    // User, role and other unique ids are not credentials.
    assert_eq!(kinds("AIDAJQABLZS4A3QDU576Q AROADBQP57FF2AEXAMPLE"), vec![]);
    for p in ["ASIA", "ABIA", "ACCA"] {
        assert_eq!(kinds(&key_id(p, 4)), vec![Kind::AccessKeyId], "{p}");
    }
    assert_eq!(kinds("A3TQZJ5BHBDKCQ7GW2XQ"), vec![Kind::AccessKeyId]);
}

#[test]
fn git_commit_hashes_are_not_secrets() {
    let text = format!(
        "commit 9fceb02d0ae598e95dc970b74767f19372d61af8\naws key {}\n",
        "da39a3ee5e6b4b0d3255bfef95601890afd80709"
    );
    assert_eq!(kinds(&text), vec![]);
}

#[test]
fn session_token_in_context_and_next_to_asia() {
    let id = key_id("ASIA", 5);
    let token: String = (0..6).map(|i| secret(10 + i)).collect::<Vec<_>>().join("");
    let text = format!("AWS_SESSION_TOKEN={token}\n");
    assert_eq!(kinds(&text), vec![Kind::SessionToken]);
    let text = format!("{{\"AccessKeyId\": \"{id}\", \"SessionToken\": \"{token}\"}}");
    let ms = scan_text(&text);
    let t = ms
        .iter()
        .find(|m| m.kind == Kind::SessionToken)
        .expect("token");
    assert_eq!(t.key_id.as_deref(), Some(id.as_str()));
    // A long base64 blob with no context is not a token.
    assert_eq!(kinds(&format!("data: {token}\n")), vec![]);
}

#[test]
fn private_keys_need_a_body() {
    let body: String = (0..5)
        .map(|i| secret(20 + i))
        .collect::<Vec<_>>()
        .join("\n");
    let pem = format!("-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----\n");
    let ms = scan_text(&format!("key: |\n{pem}"));
    assert_eq!(ms.len(), 1);
    assert_eq!(ms[0].kind, Kind::PrivateKey);
    assert_eq!(ms[0].line, 2);
    let placeholder = "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----";
    assert_eq!(kinds(placeholder), vec![]);
    assert_eq!(
        kinds("-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----"),
        vec![]
    );
}

#[test]
fn user_data_base64_gzip_is_opened() {
    let (id, sk) = (key_id("AKIA", 6), secret(6));
    let script =
        format!("#!/bin/bash\nexport AWS_ACCESS_KEY_ID={id}\nexport AWS_SECRET_ACCESS_KEY={sk}\n");
    let b64gz = STANDARD.encode(gzip(script.as_bytes()));
    // Whole blob, as EC2 returns user data.
    let ms = scan_bytes(b64gz.as_bytes());
    assert_eq!(ms.len(), 2, "{ms:?}");
    assert!(ms.iter().all(|m| m.via == vec![Layer::Base64, Layer::Gzip]));
    assert_eq!(ms[0].key_id.as_deref(), Some(id.as_str()));
    // Raw gzip and a base64 run inside a cloud-config document.
    assert_eq!(scan_bytes(&gzip(script.as_bytes())).len(), 2);
    let doc = format!("#cloud-config\nwrite_files:\n  - encoding: gz+b64\n    content: {b64gz}\n");
    let ms = scan_bytes(doc.as_bytes());
    assert_eq!(ms.len(), 2, "{ms:?}");
    assert_eq!((ms[0].line, ms[0].column), (4, 14));
    // Plain base64 wrapped at 76 columns.
    let wrapped: String = STANDARD
        .encode(script.as_bytes())
        .as_bytes()
        .chunks(76)
        .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
        .collect();
    assert_eq!(scan_bytes(wrapped.as_bytes()).len(), 2);
}

#[test]
fn gzip_bomb_is_bounded() {
    let zeros = vec![0u8; 64 * 1024 * 1024];
    let bomb = gzip(&zeros);
    assert!(scan_bytes(&bomb).is_empty());
}

#[test]
fn invalid_utf8_keeps_byte_offsets() {
    let id = key_id("AKIA", 7);
    let mut data = vec![0xff, 0xfe, b' '];
    data.extend_from_slice(id.as_bytes());
    let ms = scan_bytes(&data);
    assert_eq!(ms.len(), 1);
    assert_eq!(&data[ms[0].start..ms[0].end], id.as_bytes());
}

proptest! {
    #[test]
    fn never_panics_on_text(s in ".{0,400}") {
        let _ = scan_text(&s);
    }

    #[test]
    fn never_panics_on_bytes(b in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = scan_bytes(&b);
        let _ = scan_bytes(STANDARD.encode(&b).as_bytes());
        let _ = scan_bytes(&gzip(&b));
    }

    #[test]
    fn embedded_key_id_is_always_found(
        prefix in prop::sample::select(vec!["AKIA", "ASIA", "ABIA", "ACCA"]),
        account in 0u64..=999_999_999_999,
        random in proptest::collection::vec(any::<u8>(), 16),
        before in "[^A-Za-z0-9_]{0,1}.{0,100}[^A-Za-z0-9_]",
        after in "[^A-Za-z0-9_].{0,100}",
    ) {
        let acct = format!("{account:012}");
        let id = keycard_proto::ids::access_key_id(prefix, &acct, &random);
        prop_assume!(!id.ends_with("EXAMPLE") && keycard_scan::entropy(&id) >= 3.0);
        let text = format!("{before}{id}{after}");
        let ms = scan_text(&text);
        let m = ms.iter().find(|m| m.kind == Kind::AccessKeyId && m.start == before.len());
        prop_assert!(m.is_some(), "{id} not found in {text:?}: {ms:?}");
        prop_assert_eq!(m.and_then(|m| m.account.clone()), Some(acct));
    }
}
