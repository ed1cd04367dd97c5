//! `aws-chunked` decoding against AWS's published example and generated bodies.

use bytes::Bytes;
use keycard_proto::SecretKey;
use keycard_proto::chunked::{
    ChunkMode, chunk_signature, decode_aws_chunked, decode_body, trailer_signature,
};
use keycard_proto::sigv4::{
    AuthErrorCode, ParsedAuth, Scope, Verified, parse_amz_date, parse_auth, payload_hash, verify,
};
use proptest::prelude::*;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const SEED: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
const SIG1: &str = "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648";
const SIG2: &str = "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497";
const SIG_FINAL: &str = "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9";
/// Trailers first:1st, second:2nd, third:3rd after SIG_FINAL (aws-c-auth's test).
const SIG_TRAILER: &str = "df5735bd9f3295cd9386572292562fefc93ba94e80a0a1ddcbd652c4e0a75e6c";

fn example_parts(content_sha256: &str, decoded_len: usize) -> http::request::Parts {
    let authz = format!(
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature={SEED}"
    );
    http::Request::builder()
        .method("PUT")
        .uri("/examplebucket/chunkObject.txt")
        .header("host", "s3.amazonaws.com")
        .header("x-amz-date", "20130524T000000Z")
        .header("x-amz-storage-class", "REDUCED_REDUNDANCY")
        .header("authorization", authz)
        .header("x-amz-content-sha256", content_sha256)
        .header("content-encoding", "aws-chunked")
        .header("x-amz-decoded-content-length", decoded_len.to_string())
        .header("content-length", "66824")
        .body(())
        .map(|r| r.into_parts().0)
        .expect("parts")
}

fn verified_example() -> (http::request::Parts, ParsedAuth, Verified) {
    let parts = example_parts("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", 66560);
    let auth = parse_auth(&parts).expect("parse").expect("auth");
    let hash = payload_hash(&parts, &auth, b"").expect("hash");
    assert_eq!(hash, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD");
    let v = verify(
        &parts,
        &auth,
        &SecretKey::new(SECRET.to_owned()),
        &hash,
        auth.timestamp,
    )
    .expect("seed signature verifies");
    assert_eq!(v.seed_signature, SEED);
    (parts, auth, v)
}

fn chunk(out: &mut Vec<u8>, data: &[u8], sig: &str) {
    out.extend_from_slice(format!("{:x};chunk-signature={sig}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    if !data.is_empty() {
        out.extend_from_slice(b"\r\n");
    }
}

fn example_body() -> Vec<u8> {
    let mut b = Vec::new();
    chunk(&mut b, &[b'a'; 65536], SIG1);
    chunk(&mut b, &[b'a'; 1024], SIG2);
    chunk(&mut b, b"", SIG_FINAL);
    b.extend_from_slice(b"\r\n");
    b
}

#[test]
fn aws_documented_example() {
    let (parts, auth, v) = verified_example();
    let body = example_body();
    assert_eq!(body.len(), 66824, "the documented Content-Length");
    let d = decode_aws_chunked(&body, ChunkMode::signed(&v, &auth)).expect("decode");
    assert_eq!(d.data.len(), 66560);
    assert!(d.data.iter().all(|&b| b == b'a'));
    assert!(d.trailers.is_empty());

    let d2 =
        decode_body(&parts, Bytes::from(body.clone()), Some(&auth), Some(&v)).expect("decode_body");
    assert_eq!(d2, d);

    // Signed body needs verification data.
    assert_eq!(
        decode_body(&parts, Bytes::from(body.clone()), None, None)
            .expect_err("unverified")
            .code,
        AuthErrorCode::IncompleteSignature
    );
    // Wrong declared length.
    let p = example_parts("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", 66561);
    assert_eq!(
        decode_body(&p, Bytes::from(body), Some(&auth), Some(&v))
            .expect_err("length")
            .code,
        AuthErrorCode::IncompleteBody
    );
}

#[test]
fn chunk_signature_helper_matches_docs() {
    let (_, auth, v) = verified_example();
    let s1 = chunk_signature(
        &v.signing_key,
        auth.timestamp,
        &auth.scope,
        SEED,
        &[b'a'; 65536],
    );
    assert_eq!(s1, SIG1);
    let s2 = chunk_signature(
        &v.signing_key,
        auth.timestamp,
        &auth.scope,
        &s1,
        &[b'a'; 1024],
    );
    assert_eq!(s2, SIG2);
    let s3 = chunk_signature(&v.signing_key, auth.timestamp, &auth.scope, &s2, b"");
    assert_eq!(s3, SIG_FINAL);
    let t = trailer_signature(
        &v.signing_key,
        auth.timestamp,
        &auth.scope,
        &s3,
        &[("first", "1st"), ("second", "2nd"), ("third", "3rd")],
    );
    assert_eq!(t, SIG_TRAILER);
}

#[test]
fn signed_trailers() {
    let (_, auth, v) = verified_example();
    let mut b = Vec::new();
    chunk(&mut b, &[b'a'; 65536], SIG1);
    chunk(&mut b, &[b'a'; 1024], SIG2);
    chunk(&mut b, b"", SIG_FINAL);
    b.extend_from_slice(b"first:1st\r\nsecond:2nd\r\nthird:3rd\r\n");
    let good = [
        b.clone(),
        format!("x-amz-trailer-signature:{SIG_TRAILER}\r\n\r\n").into_bytes(),
    ]
    .concat();
    let d = decode_aws_chunked(&good, ChunkMode::signed(&v, &auth)).expect("trailers verify");
    assert_eq!(d.trailer("second"), Some("2nd"));
    assert_eq!(d.trailers.len(), 3);

    // Missing trailer signature, wrong trailer signature, tampered trailer.
    let missing = [b.clone(), b"\r\n".to_vec()].concat();
    assert!(decode_aws_chunked(&missing, ChunkMode::signed(&v, &auth)).is_err());
    let wrong = [
        b.clone(),
        format!("x-amz-trailer-signature:{SIG_FINAL}\r\n\r\n").into_bytes(),
    ]
    .concat();
    assert_eq!(
        decode_aws_chunked(&wrong, ChunkMode::signed(&v, &auth))
            .expect_err("wrong")
            .code,
        AuthErrorCode::SignatureDoesNotMatch
    );
    let tampered = String::from_utf8(good.clone())
        .expect("utf8")
        .replace("2nd", "2nD");
    assert!(decode_aws_chunked(tampered.as_bytes(), ChunkMode::signed(&v, &auth)).is_err());
    // Unsigned mode ignores the trailer signature line but keeps trailers.
    let d = decode_aws_chunked(&good, ChunkMode::Unsigned).expect("unsigned");
    assert_eq!(d.trailers.len(), 3);
}

#[test]
fn tampering_is_rejected() {
    let (_, auth, v) = verified_example();
    let body = example_body();
    // Flip bytes at a spread of positions: data, sizes, signatures, CRLFs.
    let mut positions: Vec<usize> = (0..100).collect();
    positions.extend((100..body.len()).step_by(997));
    positions.extend(65536 + 80..65536 + 200);
    positions.extend(body.len() - 100..body.len() - 2);
    for i in positions {
        let mut t = body.clone();
        t[i] ^= 0x01;
        assert!(
            decode_aws_chunked(&t, ChunkMode::signed(&v, &auth)).is_err(),
            "byte {i}"
        );
    }
    // Swapping chunk order.
    let mut swapped = Vec::new();
    chunk(&mut swapped, &[b'a'; 1024], SIG2);
    chunk(&mut swapped, &[b'a'; 65536], SIG1);
    chunk(&mut swapped, b"", SIG_FINAL);
    assert!(decode_aws_chunked(&swapped, ChunkMode::signed(&v, &auth)).is_err());
    // Dropping the final chunk.
    assert!(decode_aws_chunked(&body[..65536 + 1024 + 200], ChunkMode::signed(&v, &auth)).is_err());
    // Another scope/time.
    let mut other = auth.clone();
    other.timestamp = parse_amz_date("20130524T000001Z").expect("date");
    assert!(decode_aws_chunked(&body, ChunkMode::signed(&v, &other)).is_err());
}

#[test]
fn unsigned_trailer_body_via_decode_body() {
    let body = b"a\r\n0123456789\r\n3\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n";
    let p = example_parts("STREAMING-UNSIGNED-PAYLOAD-TRAILER", 13);
    let d = decode_body(&p, Bytes::from_static(body), None, None).expect("decode");
    assert_eq!(&d.data[..], b"0123456789abc");
    assert_eq!(d.trailer("x-amz-checksum-crc32"), Some("AAAAAA=="));
    // Non-chunked content passes through untouched.
    let p = example_parts("UNSIGNED-PAYLOAD", 0);
    let d = decode_body(&p, Bytes::from_static(b"raw"), None, None).expect("raw");
    assert_eq!(&d.data[..], b"raw");
}

fn test_scope() -> Scope {
    Scope {
        date: "20130524".to_owned(),
        region: "us-east-1".to_owned(),
        service: "s3".to_owned(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_aws_chunked(&body, ChunkMode::Unsigned);
        let mode = ChunkMode::Signed {
            signing_key: [7; 32],
            seed_signature: SEED.to_owned(),
            timestamp: parse_amz_date("20130524T000000Z").expect("date"),
            scope: test_scope(),
        };
        let _ = decode_aws_chunked(&body, mode);
    }

    #[test]
    fn never_panics_structured(
        parts in proptest::collection::vec(
            prop_oneof![
                Just(b"\r\n".to_vec()),
                Just(b"0".to_vec()),
                Just(b";chunk-signature=".to_vec()),
                Just(b"ffffffffffffffff".to_vec()),
                Just(b"x-amz-trailer-signature:".to_vec()),
                Just(b":".to_vec()),
                "[0-9a-f]{1,3}".prop_map(String::into_bytes),
                proptest::collection::vec(any::<u8>(), 0..8),
            ],
            0..24,
        )
    ) {
        let body = parts.concat();
        let _ = decode_aws_chunked(&body, ChunkMode::Unsigned);
    }

    #[test]
    fn signed_round_trip(data in proptest::collection::vec(any::<u8>(), 0..3000), sizes in proptest::collection::vec(1usize..700, 1..8)) {
        let key = [42u8; 32];
        let ts = parse_amz_date("20130524T000000Z").expect("date");
        let scope = test_scope();
        let mut body = Vec::new();
        let mut prev = SEED.to_owned();
        let mut rest = &data[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].min(rest.len());
            let sig = chunk_signature(&key, ts, &scope, &prev, &rest[..n]);
            chunk(&mut body, &rest[..n], &sig);
            prev = sig;
            rest = &rest[n..];
            i += 1;
        }
        let sig = chunk_signature(&key, ts, &scope, &prev, b"");
        chunk(&mut body, b"", &sig);
        let trailer = trailer_signature(&key, ts, &scope, &sig, &[("x-amz-checksum-crc32", "AAAAAA==")]);
        body.extend_from_slice(format!("x-amz-checksum-crc32:AAAAAA==\r\nx-amz-trailer-signature:{trailer}\r\n\r\n").as_bytes());
        let mode = ChunkMode::Signed { signing_key: key, seed_signature: SEED.to_owned(), timestamp: ts, scope };
        let d = decode_aws_chunked(&body, mode).expect("round trip");
        prop_assert_eq!(&d.data[..], &data[..]);
        prop_assert_eq!(d.trailer("x-amz-checksum-crc32"), Some("AAAAAA=="));
        let u = decode_aws_chunked(&body, ChunkMode::Unsigned).expect("unsigned");
        prop_assert_eq!(&u.data[..], &data[..]);
    }
}
