//! Secret access keys that can't leak through logs or be compared with `==`.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// A secret access key (or any other secret string).
///
/// The memory is zeroized on drop, `Debug` and `Display` print `***`, and
/// there is deliberately no `PartialEq`: compare with [`ct_eq`] on
/// [`SecretKey::expose`] if you must. Serde reads and writes the plain string,
/// so a struct that used a `String` keeps its wire format (sealed session tokens).
#[derive(Clone, Default)]
pub struct SecretKey(String);

impl SecretKey {
    /// Wrap a secret.
    pub fn new(secret: String) -> Self {
        Self(secret)
    }

    /// The secret itself. Every call site is a place a secret can leak: keep them few.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretKey {
    fn from(secret: String) -> Self {
        Self::new(secret)
    }
}

impl serde::Serialize for SecretKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for SecretKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Constant-time equality of two byte strings (the length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_everywhere() {
        let s = SecretKey::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned());
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{:#?}", Some(&s)), "Some(\n    ***,\n)");
        assert_eq!(s.expose(), "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let c = s.clone();
        assert_eq!(c.expose(), s.expose());
    }

    #[test]
    fn serde_is_the_plain_string() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Claims {
            s: SecretKey,
        }
        #[derive(serde::Serialize, serde::Deserialize)]
        struct OldClaims {
            s: String,
        }
        let old = OldClaims {
            s: "wJalrXUtnFEMI/K7MDENG".to_owned(),
        };
        let bytes = serde_json::to_vec(&old).expect("ser");
        let new: Claims = serde_json::from_slice(&bytes).expect("old form reads");
        assert_eq!(new.s.expose(), "wJalrXUtnFEMI/K7MDENG");
        assert_eq!(serde_json::to_vec(&new).expect("ser"), bytes);
    }

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }
}
