//! JSON Web Tokens: verifying a web identity token against its issuer's
//! JWKS (RS256/RS384/RS512, ES256, ES384), and signing keycard's own
//! tokens (RS256, ES384) with the issuer keys kept sealed in the store.
//! Only asymmetric algorithms: `none` and HMAC tokens are refused.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents, UnparsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Largest token read (STS's `WebIdentityToken` limit).
pub const MAX_TOKEN: usize = 20_000;

/// A parsed (not yet verified) compact JWS.
pub struct Jwt {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

/// The claims are the caller's identity: `Debug` shows no signature.
impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("header", &self.header)
            .field("claims", &self.claims)
            .finish()
    }
}

fn b64_json(part: &str) -> Option<Map<String, Value>> {
    let raw = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&raw).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

impl Jwt {
    /// Split and decode `header.payload.signature`; `None` if malformed.
    pub fn parse(token: &str) -> Option<Jwt> {
        if token.len() > MAX_TOKEN {
            return None;
        }
        let mut it = token.trim().split('.');
        let (h, p, s) = (it.next()?, it.next()?, it.next()?);
        if it.next().is_some() {
            return None;
        }
        Some(Jwt {
            header: b64_json(h)?,
            claims: b64_json(p)?,
            signing_input: format!("{h}.{p}"),
            signature: URL_SAFE_NO_PAD.decode(s).ok()?,
        })
    }

    pub fn alg(&self) -> &str {
        self.header.get("alg").and_then(Value::as_str).unwrap_or("")
    }

    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    pub fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// A numeric date claim (`exp`, `nbf`, `iat`).
    pub fn time_claim(&self, name: &str) -> Option<i64> {
        let v = self.claims.get(name)?;
        v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
    }

    /// A claim that is a string or an array of strings, as a list
    /// (`aud`, `amr`).
    pub fn list_claim(&self, name: &str) -> Vec<String> {
        match self.claims.get(name) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Whether one key of `jwks` (`{"keys": [...]}`) verifies the
    /// signature under the header's algorithm (and `kid`, when both name one).
    pub fn verify(&self, jwks: &Value) -> bool {
        let Some(keys) = jwks.get("keys").and_then(Value::as_array) else {
            return false;
        };
        keys.iter()
            .filter(
                |k| match (self.kid(), k.get("kid").and_then(Value::as_str)) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                },
            )
            .filter(|k| k.get("use").and_then(Value::as_str) != Some("enc"))
            .any(|k| {
                verify_with(
                    k,
                    self.alg(),
                    self.signing_input.as_bytes(),
                    &self.signature,
                )
            })
    }
}

fn member(jwk: &Value, name: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(jwk.get(name)?.as_str()?.trim_end_matches('='))
        .ok()
}

fn verify_with(jwk: &Value, alg: &str, msg: &[u8], sig: &[u8]) -> bool {
    let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or("");
    let rsa = |a: &'static signature::RsaParameters| {
        if kty != "RSA" {
            return false;
        }
        let (Some(n), Some(e)) = (member(jwk, "n"), member(jwk, "e")) else {
            return false;
        };
        RsaPublicKeyComponents { n: &n, e: &e }
            .verify(a, msg, sig)
            .is_ok()
    };
    let ec = |a: &'static signature::EcdsaVerificationAlgorithm, crv: &str, len: usize| {
        if kty != "EC" || jwk.get("crv").and_then(Value::as_str) != Some(crv) {
            return false;
        }
        let (Some(x), Some(y)) = (member(jwk, "x"), member(jwk, "y")) else {
            return false;
        };
        if x.len() != len || y.len() != len {
            return false;
        }
        let mut point = vec![4u8];
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        UnparsedPublicKey::new(a, &point).verify(msg, sig).is_ok()
    };
    match alg {
        "RS256" => rsa(&signature::RSA_PKCS1_2048_8192_SHA256),
        "RS384" => rsa(&signature::RSA_PKCS1_2048_8192_SHA384),
        "RS512" => rsa(&signature::RSA_PKCS1_2048_8192_SHA512),
        "ES256" => ec(&signature::ECDSA_P256_SHA256_FIXED, "P-256", 32),
        "ES384" => ec(&signature::ECDSA_P384_SHA384_FIXED, "P-384", 48),
        _ => false,
    }
}

// ---------------------------------------------------------- issuer keys

/// A signing key as stored (the whole set is sealed under the master key).
#[derive(Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    alg: String,
    /// PKCS#8 DER, base64url.
    pkcs8: String,
}

enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

struct SigningKey {
    kid: String,
    alg: &'static str,
    signer: Signer,
    /// The public half as a JWK.
    jwk: Value,
}

/// keycard's issuer keys: one RS256 and one ES384 key. `Debug` names
/// the key ids only.
pub struct IssuerKeys {
    keys: Vec<SigningKey>,
}

impl std::fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|k| k.kid.as_str()).collect();
        write!(f, "IssuerKeys({kids:?}, ***)")
    }
}

fn kid() -> String {
    hex::encode(crate::crypto::random_bytes::<16>())
}

fn load(s: &StoredKey) -> Option<SigningKey> {
    let der = URL_SAFE_NO_PAD.decode(&s.pkcs8).ok()?;
    let enc = |b: &[u8]| Value::String(URL_SAFE_NO_PAD.encode(b));
    match s.alg.as_str() {
        "RS256" => {
            let kp = RsaKeyPair::from_pkcs8(&der).ok()?;
            let pk = kp.public_key();
            let jwk = json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": s.kid,
                "n": enc(pk.modulus().big_endian_without_leading_zero()),
                "e": enc(pk.exponent().big_endian_without_leading_zero())});
            Some(SigningKey {
                kid: s.kid.clone(),
                alg: "RS256",
                signer: Signer::Rsa(kp),
                jwk,
            })
        }
        "ES384" => {
            let kp =
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, &der).ok()?;
            let point = kp.public_key().as_ref();
            let (x, y) = point.get(1..49).zip(point.get(49..97))?;
            let jwk = json!({"kty": "EC", "alg": "ES384", "use": "sig", "kid": s.kid,
                "crv": "P-384", "x": enc(x), "y": enc(y)});
            Some(SigningKey {
                kid: s.kid.clone(),
                alg: "ES384",
                signer: Signer::Ec(kp),
                jwk,
            })
        }
        _ => None,
    }
}

impl IssuerKeys {
    /// Fresh keys and their serialized (still unsealed) form.
    pub fn generate() -> Option<(IssuerKeys, Vec<u8>)> {
        let rsa = RsaKeyPair::generate(KeySize::Rsa2048).ok()?;
        let rsa_der = rsa.as_der().ok()?;
        let ec = EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            &SystemRandom::new(),
        )
        .ok()?;
        let stored = vec![
            StoredKey {
                kid: kid(),
                alg: "RS256".into(),
                pkcs8: URL_SAFE_NO_PAD.encode(rsa_der.as_ref()),
            },
            StoredKey {
                kid: kid(),
                alg: "ES384".into(),
                pkcs8: URL_SAFE_NO_PAD.encode(ec.as_ref()),
            },
        ];
        let bytes = serde_json::to_vec(&stored).ok()?;
        Some((IssuerKeys::from_bytes(&bytes)?, bytes))
    }

    /// Parse what [`IssuerKeys::generate`] serialized.
    pub fn from_bytes(b: &[u8]) -> Option<IssuerKeys> {
        let stored: Vec<StoredKey> = serde_json::from_slice(b).ok()?;
        let keys: Vec<SigningKey> = stored.iter().filter_map(load).collect();
        (!keys.is_empty() && keys.len() == stored.len()).then_some(IssuerKeys { keys })
    }

    /// The public keys, as the JWKS endpoint serves them.
    pub fn jwks(&self) -> Value {
        json!({"keys": self.keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid == kid)
    }

    /// A compact JWS of `claims` under the key for `alg`.
    pub fn sign(&self, alg: &str, claims: &Value) -> Option<String> {
        let key = self.keys.iter().find(|k| k.alg == alg)?;
        let header = json!({"alg": key.alg, "typ": "JWT", "kid": key.kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let sig = match &key.signer {
            Signer::Rsa(kp) => {
                let mut out = vec![0u8; kp.public_modulus_len()];
                kp.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    input.as_bytes(),
                    &mut out,
                )
                .ok()?;
                out
            }
            Signer::Ec(kp) => kp.sign(&rng, input.as_bytes()).ok()?.as_ref().to_vec(),
        };
        Some(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> IssuerKeys {
        IssuerKeys::generate().expect("keys").0
    }

    #[test]
    fn signed_tokens_verify_and_tampered_ones_do_not() {
        let k = keys();
        let claims = json!({"iss": "https://x", "sub": "s", "aud": "a"});
        for alg in ["RS256", "ES384"] {
            let t = k.sign(alg, &claims).expect("signed");
            let jwt = Jwt::parse(&t).expect("parsed");
            assert_eq!(jwt.alg(), alg);
            assert!(jwt.verify(&k.jwks()), "{alg}");
            let other = keys();
            assert!(!jwt.verify(&other.jwks()), "{alg} under another key");
            // Flip the payload: the signature no longer matches.
            let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
            parts[1] = URL_SAFE_NO_PAD.encode(json!({"iss": "https://x", "sub": "t"}).to_string());
            let bad = Jwt::parse(&parts.join(".")).expect("parsed");
            assert!(!bad.verify(&k.jwks()));
        }
    }

    #[test]
    fn unsigned_and_malformed_tokens_are_refused() {
        let k = keys();
        let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
        let p = URL_SAFE_NO_PAD.encode(r#"{"sub":"x"}"#);
        let none = Jwt::parse(&format!("{h}.{p}.")).expect("parsed");
        assert!(!none.verify(&k.jwks()));
        assert!(Jwt::parse("a.b").is_none());
        assert!(Jwt::parse("not a jwt").is_none());
    }

    #[test]
    fn keys_survive_serialization_and_debug_hides_them() {
        let (k, bytes) = IssuerKeys::generate().expect("keys");
        let again = IssuerKeys::from_bytes(&bytes).expect("parsed");
        assert_eq!(k.jwks(), again.jwks());
        let t = again.sign("ES384", &json!({"a": 1})).expect("signed");
        assert!(Jwt::parse(&t).expect("jwt").verify(&k.jwks()));
        assert!(!format!("{k:?}").contains("pkcs8"));
    }
}
