//! XML Signature verification as SAML identity providers sign: one
//! enveloped signature over an element named by its `ID`, exclusive
//! canonicalization (with or without comments, with an inclusive
//! prefix list), RSA or ECDSA with SHA-1/256/384/512. Nothing is
//! fetched or resolved: the only reference accepted is the element the
//! caller is about to trust, so a signature over some other element
//! (signature wrapping) never vouches for it.

use std::collections::{BTreeMap, BTreeSet};

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::Digest;

use crate::certs::Certificate;
use crate::xmltree::{Element, Node, XML_NS, split_name};

pub const DS: &str = "http://www.w3.org/2000/09/xmldsig#";
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const EXC_C14N_COMMENTS: &str = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const RSA_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const EC_OID: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// Exclusive XML canonicalization settings.
#[derive(Debug, Clone, Default)]
pub struct C14n<'a> {
    pub with_comments: bool,
    /// `InclusiveNamespaces PrefixList` (`#default` for the default).
    pub inclusive: Vec<String>,
    /// A subtree left out (the enveloped signature).
    pub exclude: Option<&'a Element>,
}

fn escape(out: &mut String, s: &str, attr: bool) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' if !attr => out.push_str("&gt;"),
            '"' if attr => out.push_str("&quot;"),
            '\t' if attr => out.push_str("&#x9;"),
            '\n' if attr => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

impl C14n<'_> {
    /// The canonical form of `e` and its subtree, as an apex: namespaces
    /// its ancestors declared are rendered where visibly used.
    pub fn canonicalize(&self, e: &Element) -> String {
        let mut out = String::new();
        self.element(e, &BTreeMap::new(), &mut out);
        out
    }

    /// Prefixes the element visibly uses (its own, its attributes'),
    /// plus the inclusive list's that are in scope.
    fn utilized(&self, e: &Element) -> BTreeSet<String> {
        let mut u = BTreeSet::new();
        u.insert(split_name(&e.name).0.to_string());
        for a in &e.attrs {
            let (p, _) = split_name(&a.name);
            if !p.is_empty() && p != "xml" {
                u.insert(p.to_string());
            }
        }
        for p in &self.inclusive {
            let p = if p == "#default" { "" } else { p.as_str() };
            if p.is_empty() || e.ns.contains_key(p) {
                u.insert(p.to_string());
            }
        }
        u
    }

    fn element(&self, e: &Element, rendered: &BTreeMap<String, String>, out: &mut String) {
        if self.exclude.is_some_and(|x| std::ptr::eq(x, e)) {
            return;
        }
        out.push('<');
        out.push_str(&e.name);
        let mut here = rendered.clone();
        for p in self.utilized(e) {
            let v = e.ns.get(&p).cloned().unwrap_or_default();
            let before = rendered.get(&p).cloned().unwrap_or_default();
            // An unbound prefix (empty value) is only ever the default.
            if v != before && (p.is_empty() || !v.is_empty()) {
                out.push_str(if p.is_empty() { " xmlns" } else { " xmlns:" });
                out.push_str(&p);
                out.push_str("=\"");
                escape(out, &v, true);
                out.push('"');
            }
            here.insert(p, v);
        }
        let mut attrs: Vec<(&str, &str, &crate::xmltree::Attr)> = e
            .attrs
            .iter()
            .map(|a| {
                let (p, local) = split_name(&a.name);
                let ns = match p {
                    "" => "",
                    "xml" => XML_NS,
                    p => e.ns.get(p).map(String::as_str).unwrap_or(""),
                };
                (ns, local, a)
            })
            .collect();
        attrs.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        for (_, _, a) in attrs {
            out.push(' ');
            out.push_str(&a.name);
            out.push_str("=\"");
            escape(out, &a.value, true);
            out.push('"');
        }
        out.push('>');
        for n in &e.children {
            match n {
                Node::Elem(c) => self.element(c, &here, out),
                Node::Text(t) => escape(out, t, false),
                Node::Comment(c) if self.with_comments => {
                    out.push_str("<!--");
                    out.push_str(c);
                    out.push_str("-->");
                }
                Node::Comment(_) => {}
                Node::Pi(t, d) => {
                    out.push_str("<?");
                    out.push_str(t);
                    if !d.is_empty() {
                        out.push(' ');
                        out.push_str(d);
                    }
                    out.push_str("?>");
                }
            }
        }
        out.push_str("</");
        out.push_str(&e.name);
        out.push('>');
    }
}

/// Why a signature was not accepted (for logs and tests; callers answer
/// one error to the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsigError(pub &'static str);

type Res<T> = Result<T, DsigError>;

fn need<T>(v: Option<T>, why: &'static str) -> Res<T> {
    v.ok_or(DsigError(why))
}

/// A canonicalization method element's settings.
fn c14n_of<'a>(method: &Element, exclude: Option<&'a Element>) -> Res<C14n<'a>> {
    let with_comments = match method.attr("Algorithm") {
        Some(EXC_C14N) => false,
        Some(EXC_C14N_COMMENTS) => true,
        _ => return Err(DsigError("unsupported canonicalization")),
    };
    let inclusive = method
        .children_named(EXC_C14N, "InclusiveNamespaces")
        .next()
        .and_then(|i| i.attr("PrefixList"))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    Ok(C14n {
        with_comments,
        inclusive,
        exclude,
    })
}

fn digest(alg: &str, data: &[u8]) -> Res<Vec<u8>> {
    Ok(match alg {
        "http://www.w3.org/2000/09/xmldsig#sha1" => sha1::Sha1::digest(data).to_vec(),
        "http://www.w3.org/2001/04/xmlenc#sha256" => sha2::Sha256::digest(data).to_vec(),
        "http://www.w3.org/2001/04/xmldsig-more#sha384" => sha2::Sha384::digest(data).to_vec(),
        "http://www.w3.org/2001/04/xmlenc#sha512" => sha2::Sha512::digest(data).to_vec(),
        _ => return Err(DsigError("unsupported digest")),
    })
}

/// (key algorithm OID, verification algorithm) of a SignatureMethod.
fn signature_alg(uri: &str) -> Res<(&'static [u8], &'static dyn VerificationAlgorithm)> {
    Ok(match uri {
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1" => (
            RSA_OID,
            &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
        ),
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256" => {
            (RSA_OID, &signature::RSA_PKCS1_2048_8192_SHA256)
        }
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384" => {
            (RSA_OID, &signature::RSA_PKCS1_2048_8192_SHA384)
        }
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512" => {
            (RSA_OID, &signature::RSA_PKCS1_2048_8192_SHA512)
        }
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256" => {
            (EC_OID, &signature::ECDSA_P256_SHA256_FIXED)
        }
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384" => {
            (EC_OID, &signature::ECDSA_P384_SHA384_FIXED)
        }
        _ => return Err(DsigError("unsupported signature method")),
    })
}

fn b64(text: &str) -> Res<Vec<u8>> {
    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    B64.decode(clean.as_bytes())
        .map_err(|_| DsigError("bad base64"))
}

/// Check the digest of the one Reference against `signed` (which must
/// be what it names) and return nothing else.
fn check_reference(signed_info: &Element, signed: &Element, sig: &Element) -> Res<()> {
    let reference = need(
        signed_info.only_child(DS, "Reference"),
        "exactly one Reference expected",
    )?;
    let id = need(signed.attr("ID"), "signed element has no ID")?;
    if reference.attr("URI") != Some(&format!("#{id}")) {
        return Err(DsigError("Reference does not name the signed element"));
    }
    let mut c14n = None;
    let mut enveloped = false;
    if let Some(ts) = reference.only_child(DS, "Transforms") {
        for t in ts.elements() {
            if !t.is(DS, "Transform") {
                return Err(DsigError("unexpected element in Transforms"));
            }
            match t.attr("Algorithm") {
                Some(ENVELOPED) if !enveloped && c14n.is_none() => enveloped = true,
                Some(_) if c14n.is_none() => c14n = Some(c14n_of(t, Some(sig))?),
                _ => return Err(DsigError("unsupported transform chain")),
            }
        }
    }
    // Without a canonicalization transform the default would be
    // inclusive C14N 1.0, which no SAML IdP uses: refuse it.
    let c14n = need(c14n, "no exclusive canonicalization transform")?;
    if !enveloped {
        return Err(DsigError("signature is not enveloped"));
    }
    let method = need(
        reference
            .only_child(DS, "DigestMethod")
            .and_then(|m| m.attr("Algorithm")),
        "no DigestMethod",
    )?;
    let want = b64(&need(reference.only_child(DS, "DigestValue"), "no DigestValue")?.text())?;
    let got = digest(method, c14n.canonicalize(signed).as_bytes())?;
    if subtle::ConstantTimeEq::ct_eq(got.as_slice(), want.as_slice()).into() {
        Ok(())
    } else {
        Err(DsigError("digest mismatch"))
    }
}

/// Verify the enveloped signature `sig` (a `ds:Signature` child of
/// `signed`) with one of `keys`.
pub fn verify(signed: &Element, sig: &Element, keys: &[Certificate]) -> Res<()> {
    if !sig.is(DS, "Signature") {
        return Err(DsigError("not a ds:Signature"));
    }
    if !signed.elements().any(|c| std::ptr::eq(c, sig)) {
        return Err(DsigError("signature is not a child of the signed element"));
    }
    let signed_info = need(sig.only_child(DS, "SignedInfo"), "no SignedInfo")?;
    let c14n = c14n_of(
        need(
            signed_info.only_child(DS, "CanonicalizationMethod"),
            "no CanonicalizationMethod",
        )?,
        None,
    )?;
    let (oid, alg) = signature_alg(need(
        signed_info
            .only_child(DS, "SignatureMethod")
            .and_then(|m| m.attr("Algorithm")),
        "no SignatureMethod",
    )?)?;
    check_reference(signed_info, signed, sig)?;
    let value = b64(&need(sig.only_child(DS, "SignatureValue"), "no SignatureValue")?.text())?;
    let msg = c14n.canonicalize(signed_info);
    let ok = keys.iter().filter(|k| k.key_alg == oid).any(|k| {
        UnparsedPublicKey::new(alg, &k.key)
            .verify(msg.as_bytes(), &value)
            .is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(DsigError("signature value does not verify"))
    }
}

/// The `ds:Signature` children of an element.
pub fn signatures(e: &Element) -> impl Iterator<Item = &Element> {
    e.children_named(DS, "Signature")
}

/// Signing certificates of SAML metadata: every `ds:X509Certificate`
/// under a `KeyDescriptor` whose `use` is not `encryption`.
pub fn metadata_certificates(metadata: &Element) -> Vec<Certificate> {
    const MD: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
    metadata
        .descendants()
        .into_iter()
        .filter(|e| e.is(MD, "KeyDescriptor") && e.attr("use") != Some("encryption"))
        .flat_map(Element::descendants)
        .filter(|e| e.is(DS, "X509Certificate"))
        .filter_map(|e| b64(&e.text()).ok())
        .filter_map(|der| crate::certs::certificate_der(&der))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmltree::parse;

    fn c14n(doc: &str) -> String {
        C14n::default().canonicalize(&parse(doc).unwrap())
    }

    #[test]
    fn exclusive_canonical_form() {
        // Attributes sorted by namespace then name, unused declarations
        // dropped, empty elements expanded, text and attributes escaped.
        assert_eq!(
            c14n(
                "<a:r xmlns:a='urn:a' xmlns:b='urn:b' xmlns:z='urn:z' z:k='1' b='2&#9;' a:c='3'><e/>x&gt;y\r\n</a:r>"
            ),
            "<a:r xmlns:a=\"urn:a\" xmlns:z=\"urn:z\" b=\"2&#x9;\" a:c=\"3\" z:k=\"1\"><e></e>x&gt;y\n</a:r>"
        );
        // A default namespace is rendered where used and undone with xmlns="".
        assert_eq!(
            c14n("<r xmlns='urn:d'><p:s xmlns:p='urn:p'><t xmlns=''/></p:s></r>"),
            "<r xmlns=\"urn:d\"><p:s xmlns:p=\"urn:p\"><t xmlns=\"\"></t></p:s></r>"
        );
        // A declaration repeated by a descendant is not rendered twice.
        assert_eq!(
            c14n("<p:r xmlns:p='urn:p'><p:s xmlns:p='urn:p'/><!--c--></p:r>"),
            "<p:r xmlns:p=\"urn:p\"><p:s></p:s></p:r>"
        );
    }

    #[test]
    fn subtree_takes_ancestor_namespaces_it_uses() {
        let doc = parse("<r xmlns:a='urn:a' xmlns:b='urn:b'><a:s><b:t/></a:s></r>").unwrap();
        let s = doc.elements().next().unwrap();
        assert_eq!(
            C14n::default().canonicalize(s),
            "<a:s xmlns:a=\"urn:a\"><b:t xmlns:b=\"urn:b\"></b:t></a:s>"
        );
        let incl = C14n {
            inclusive: vec!["b".into()],
            ..C14n::default()
        };
        assert_eq!(
            incl.canonicalize(s),
            "<a:s xmlns:a=\"urn:a\" xmlns:b=\"urn:b\"><b:t></b:t></a:s>"
        );
    }

    use proptest::prelude::*;

    /// A small random document: prefixed and default namespaces,
    /// attributes in any order, text with characters that need escaping.
    fn tree() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            "[a-z<>&\"' \t\n]{0,8}".prop_map(|t| crate::xmltree::tests_escape(&t)),
            Just("<!--c-->".to_string()),
            Just("<?pi data?>".to_string()),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            (
                prop::sample::select(vec!["e", "p:e", "q:f", "g"]),
                prop::sample::select(vec![
                    "",
                    " xmlns='urn:d'",
                    " xmlns:p='urn:p'",
                    " xmlns=''",
                    " xmlns:q='urn:q' q:z='1'",
                ]),
                prop::sample::select(vec!["", " b='x&#9;y'", " a='1' c='&lt;'"]),
                prop::collection::vec(inner, 0..4),
            )
                .prop_map(|(name, ns, attrs, kids)| {
                    format!("<{name}{ns}{attrs}>{}</{name}>", kids.concat())
                })
        })
    }

    proptest! {
        #[test]
        fn garbage_never_panics(s in "\\PC{0,200}") {
            if let Ok(e) = parse(&s) {
                let _ = C14n::default().canonicalize(&e);
            }
        }

        /// Canonicalizing the canonical form changes nothing.
        #[test]
        fn canonical_form_is_a_fixed_point(body in tree()) {
            let doc = format!("<r xmlns:p='urn:p' xmlns:q='urn:q'>{body}</r>");
            if let Ok(e) = parse(&doc) {
                let once = C14n::default().canonicalize(&e);
                let again = C14n::default().canonicalize(&parse(&once).unwrap());
                prop_assert_eq!(once, again);
            }
        }
    }
}
