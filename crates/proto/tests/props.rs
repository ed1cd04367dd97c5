//! Property tests: nothing panics on any input, and the encoders/decoders agree.

use keycard_proto::ids::{access_key_id, account_from_access_key_id, secret_access_key, unique_id};
use keycard_proto::query::Params;
use keycard_proto::sigv4::{AuthKind, ParsedAuth, Scope, parse_auth, payload_hash_for, verify};
use keycard_proto::xml::{XmlWriter, parse_xml};
use keycard_proto::{SecretKey, sha256_hex};
use proptest::prelude::*;
use time::OffsetDateTime;

fn parts_from(uri: &str, headers: &[(String, Vec<u8>)]) -> Option<http::request::Parts> {
    let mut b = http::Request::builder().method("GET").uri(uri);
    for (k, v) in headers {
        let name = http::HeaderName::from_bytes(k.as_bytes()).ok()?;
        let value = http::HeaderValue::from_bytes(v).ok()?;
        b = b.header(name, value);
    }
    b.body(()).ok().map(|r| r.into_parts().0)
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("authorization".to_owned()),
        Just("x-amz-date".to_owned()),
        Just("date".to_owned()),
        Just("x-amz-content-sha256".to_owned()),
        Just("x-amz-security-token".to_owned()),
        Just("host".to_owned()),
        "[a-z-]{1,10}",
    ]
}

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=00".to_vec()),
        Just(b"20150830T123600Z".to_vec()),
        Just(b"UNSIGNED-PAYLOAD".to_vec()),
        "AWS4-HMAC-SHA256 [ -~]{0,80}".prop_map(String::into_bytes),
        "AWS [ -~]{0,20}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..40),
    ]
}

fn query_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=A%2F20150830%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=ab".to_owned()),
        "(X-Amz-[A-Za-z]{1,12}=[A-Za-z0-9%/]{0,20}&?){0,6}",
        "[a-zA-Z0-9=&%+._~-]{0,60}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn sigv4_never_panics(
        q in query_string(),
        path in "/[a-zA-Z0-9%/._~+=-]{0,30}",
        headers in proptest::collection::vec((header_name(), header_value()), 0..6),
        body in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let uri = if q.is_empty() { path.clone() } else { format!("{path}?{q}") };
        if let Some(parts) = parts_from(&uri, &headers) {
            let _ = payload_hash_for(&parts, &body);
            if let Ok(Some(auth)) = parse_auth(&parts) {
                let now = auth.timestamp;
                let _ = verify(&parts, &auth, &SecretKey::new("s".to_owned()), "UNSIGNED-PAYLOAD", now);
            }
        }
    }

    #[test]
    fn verify_never_panics_on_odd_auth(
        signed in proptest::collection::vec("[ -~]{0,12}", 0..6),
        service in "[a-z0-9-]{1,8}",
        date in "[0-9]{8}",
        sig in "[ -~]{0,70}",
        secs in 0i64..4_000_000_000,
        presigned in proptest::option::of(any::<u64>()),
        uri in "/[a-zA-Z0-9%/._~+=-]{0,30}(\\?[a-zA-Z0-9=&%+._~-]{0,30})?",
    ) {
        let ts = OffsetDateTime::from_unix_timestamp(secs).expect("ts");
        let auth = ParsedAuth {
            access_key_id: "AKID".to_owned(),
            scope: Scope { date, region: "us-east-1".to_owned(), service },
            signed_headers: signed,
            signature: sig,
            timestamp: ts,
            session_token: None,
            kind: presigned.map_or(AuthKind::Header, |e| AuthKind::Presigned { expires_secs: e }),
        };
        if let Some(parts) = parts_from(&uri, &[]) {
            let _ = verify(&parts, &auth, &SecretKey::new("s".to_owned()), "x", ts);
            let _ = verify(&parts, &auth, &SecretKey::new("s".to_owned()), "x", OffsetDateTime::UNIX_EPOCH);
        }
    }

    #[test]
    fn query_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200), prefix in "[A-Za-z.]{0,10}") {
        if let Ok(p) = Params::parse(&body) {
            let _ = p.list(&prefix);
            let _ = p.structs(&prefix);
            let _ = p.sub(&prefix);
        }
    }

    #[test]
    fn query_round_trip(pairs in proptest::collection::vec(("[ -~é☺]{0,10}", "[ -~é☺\n]{0,10}"), 0..10)) {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &pairs {
            ser.append_pair(k, v);
        }
        let encoded = ser.finish();
        let p = Params::parse(encoded.as_bytes()).expect("parse");
        for (k, _) in &pairs {
            if k.is_empty() { continue; }
            let last = pairs.iter().rev().find(|(k2, _)| k2 == k).map(|(_, v)| v.as_str());
            prop_assert_eq!(p.get(k), last);
        }
    }

    #[test]
    fn lists_are_numeric_order(values in proptest::collection::vec("[a-z]{1,5}", 1..15)) {
        // Insert in reverse order; list() must return 1..N order.
        let mut body = String::new();
        for (i, v) in values.iter().enumerate().rev() {
            body.push_str(&format!("Ids.member.{}={v}&Ec2Id.{}={v}&", i + 1, i + 1));
        }
        let p = Params::parse(body.as_bytes()).expect("parse");
        let want: Vec<&str> = values.iter().map(String::as_str).collect();
        prop_assert_eq!(p.list("Ids.member"), want.clone());
        prop_assert_eq!(p.list("Ec2Id"), want);
    }

    #[test]
    fn query_structured_never_panics(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("&".to_owned()), Just("=".to_owned()), Just(".".to_owned()),
                Just("%".to_owned()), Just("+".to_owned()), Just("member".to_owned()),
                "[0-9]{1,12}", "[A-Za-z]{1,3}", "%[0-9A-Fa-f]{2}",
            ],
            0..80,
        ),
        prefix in prop_oneof![Just("A.member".to_owned()), Just("A".to_owned()), "[A-Za-z.0-9]{0,8}"],
    ) {
        let body = parts.concat();
        if let Ok(p) = Params::parse(body.as_bytes()) {
            let _ = p.list(&prefix);
            for s in p.structs(&prefix) {
                let _ = s.list("member");
            }
            let _ = p.sub(&prefix);
        }
    }

    /// `Params` against a model: a list of pairs where a repeated key keeps its
    /// first position and takes the last value; list/struct/sub views agree with
    /// naive scans of the model.
    #[test]
    fn query_matches_model(
        pairs in proptest::collection::vec(
            (
                prop_oneof![
                    "[A-C]{1,2}",
                    ("[A-B]", 0u32..6).prop_map(|(k, n)| format!("{k}.{n}")),
                    ("[A-B]", 0u32..4, "[K-L]").prop_map(|(k, n, f)| format!("{k}.{n}.{f}")),
                ],
                "[a-z0-9 ]{0,4}",
            ),
            0..40,
        ),
    ) {
        let mut model: Vec<(String, String)> = Vec::new();
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &pairs {
            ser.append_pair(k, v);
            match model.iter_mut().find(|(mk, _)| mk == k) {
                Some(slot) => slot.1.clone_from(v),
                None => model.push((k.clone(), v.clone())),
            }
        }
        let p = Params::parse(ser.finish().as_bytes()).expect("parse");
        let got: Vec<(&str, &str)> = p.iter().collect();
        let want: Vec<(&str, &str)> = model.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(p.len(), model.len());
        for (k, v) in &model {
            prop_assert_eq!(p.get(k), Some(v.as_str()));
        }
        for prefix in ["A", "B"] {
            // list: members `prefix.N`, numeric order, stable for equal N.
            let mut items: Vec<(u32, &str)> = model
                .iter()
                .filter_map(|(k, v)| {
                    let n = k.strip_prefix(prefix)?.strip_prefix('.')?.parse().ok()?;
                    Some((n, v.as_str()))
                })
                .collect();
            items.sort_by_key(|(n, _)| *n);
            let want: Vec<&str> = items.into_iter().map(|(_, v)| v).collect();
            prop_assert_eq!(p.list(prefix), want);
            // structs: one group per N in numeric order, fields in first-seen order.
            let mut groups: Vec<(u32, Vec<(String, String)>)> = Vec::new();
            for (k, v) in &model {
                let Some(rest) = k.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')) else { continue };
                let Some((n, field)) = rest.split_once('.') else { continue };
                let Ok(n) = n.parse::<u32>() else { continue };
                match groups.iter_mut().find(|(g, _)| *g == n) {
                    Some((_, fs)) => fs.push((field.to_owned(), v.clone())),
                    None => groups.push((n, vec![(field.to_owned(), v.clone())])),
                }
            }
            groups.sort_by_key(|(n, _)| *n);
            let got: Vec<Vec<(String, String)>> = p
                .structs(prefix)
                .iter()
                .map(|s| s.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect())
                .collect();
            let want: Vec<Vec<(String, String)>> = groups.into_iter().map(|(_, fs)| fs).collect();
            prop_assert_eq!(got, want);
            // sub: everything under `prefix.`, in order.
            let got: Vec<(String, String)> =
                p.sub(prefix).iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
            let want: Vec<(String, String)> = model
                .iter()
                .filter_map(|(k, v)| {
                    let r = k.strip_prefix(prefix)?.strip_prefix('.')?;
                    Some((r.to_owned(), v.clone()))
                })
                .collect();
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn xml_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_xml(&body);
    }

    #[test]
    fn xml_never_panics_structured(parts in proptest::collection::vec(prop_oneof![
        Just("<a>"), Just("</a>"), Just("<b x='1'>"), Just("</b>"), Just("<c/>"), Just("&amp;"), Just("&#x41;"),
        Just("&#99999999999;"), Just("<![CDATA["), Just("]]>"), Just("<!--"), Just("-->"), Just("<?xml ?>"),
        Just("<!DOCTYPE"), Just("text"), Just("&"), Just("<"), Just(">"), Just("'"), Just("\""), Just("="),
    ], 0..30)) {
        let _ = parse_xml(parts.concat().as_bytes());
    }

    #[test]
    fn xml_text_round_trip(text in "[^\u{0}]{0,40}", attr in "[^\u{0}]{0,20}") {
        let mut w = XmlWriter::new();
        w.start_attrs("Root", &[("a", &attr)]).elem("Key", &text).end("Root");
        let n = parse_xml(w.finish().as_bytes()).expect("own output parses");
        prop_assert_eq!(n.child_text("Key"), Some(text.as_str()));
        prop_assert_eq!(n.attr("a"), Some(attr.as_str()));
    }

    #[test]
    fn access_key_account_round_trip(account in 0u64..=999_999_999_999, random in proptest::collection::vec(any::<u8>(), 0..8), temp in any::<bool>()) {
        let acct = format!("{account:012}");
        let prefix = if temp { "ASIA" } else { "AKIA" };
        let id = access_key_id(prefix, &acct, &random);
        prop_assert_eq!(id.len(), 20);
        prop_assert!(id.starts_with(prefix));
        prop_assert!(id.bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
        prop_assert_eq!(account_from_access_key_id(&id), Some(acct.clone()));
        // Unpadded input works too.
        prop_assert_eq!(account_from_access_key_id(&access_key_id(prefix, &account.to_string(), &random)), Some(acct));
    }

    #[test]
    fn ids_never_panic(s in "\\PC{0,24}", random in proptest::collection::vec(any::<u8>(), 0..16), prefix in "[A-Z]{0,6}") {
        let _ = account_from_access_key_id(&s);
        let _ = access_key_id(&prefix, &s, &random);
        let u = unique_id(&prefix, &random);
        prop_assert_eq!(u.len(), prefix.len() + 17);
        prop_assert!(u[prefix.len()..].bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
    }

    #[test]
    fn secret_keys_are_40_chars(random in proptest::array::uniform30(any::<u8>())) {
        let s = secret_access_key(&random);
        prop_assert_eq!(s.len(), 40);
        prop_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'));
    }
}

#[test]
fn secrets_never_reach_debug_output() {
    let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    let sk = SecretKey::new(secret.to_owned());
    let parts = parts_from(
        "/",
        &[
            ("x-amz-date".to_owned(), b"20150830T123600Z".to_vec()),
            (
                "authorization".to_owned(),
                b"AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/aws4_request, SignedHeaders=host;x-amz-date, Signature=00".to_vec(),
            ),
        ],
    )
    .expect("parts");
    let auth = parse_auth(&parts).expect("parse").expect("auth");
    let err = verify(&parts, &auth, &sk, &sha256_hex(b""), auth.timestamp).expect_err("mismatch");
    let key = keycard_proto::sigv4::signing_key(&sk, &auth.scope);
    let verified = keycard_proto::sigv4::Verified {
        signing_key: key,
        seed_signature: "00".to_owned(),
    };
    let mode = keycard_proto::chunked::ChunkMode::signed(&verified, &auth);
    let logged = format!("{sk:?} {sk} {auth:?} {err:?} {err} {verified:?} {mode:?}");
    assert!(!logged.contains(secret), "{logged}");
    assert!(!logged.contains(&hex::encode(key)), "{logged}");
    let with_token = ParsedAuth {
        session_token: Some("FwoGZXIvYXdzEXAMPLEtoken".to_owned()),
        ..auth
    };
    let logged = format!("{with_token:?}");
    assert!(!logged.contains("FwoGZXIvYXdzEXAMPLEtoken"), "{logged}");
    assert!(logged.contains("session_token: Some(\"***\")"), "{logged}");
}
