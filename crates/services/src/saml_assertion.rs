//! Reading a SAML 2.0 response for `AssumeRoleWithSAML`, with the checks
//! AWS makes: the signature (response or assertion) verified with the
//! provider's metadata certificates, the issuer is the provider's
//! entity, the response is at most five minutes old, the assertion's
//! conditions and bearer confirmation hold now, its audience is AWS's
//! sign-in endpoint, and the AWS attributes (Role, RoleSessionName, …)
//! are read from the very element whose signature was checked.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::error::{Result, ServiceError};
use crate::model::{Epoch, Tag};
use crate::xmldsig;
use crate::xmltree::{self, Element};

const SAMLP: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const SAML: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const MD: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
const ATTR: &str = "https://aws.amazon.com/SAML/Attributes/";
/// How old a response may be (AWS: "within 5 minutes of issuance").
const MAX_AGE: Epoch = 300;
/// Clock skew allowed on `NotBefore` and `IssueInstant`.
const SKEW: Epoch = 300;

/// What an accepted assertion says.
#[derive(Debug, Clone, Default)]
pub struct Assertion {
    pub issuer: String,
    pub subject: String,
    /// `persistent`, `transient`, or the NameID format URI as given.
    pub subject_type: String,
    /// The bearer confirmation's `Recipient` (`saml:aud`).
    pub recipient: String,
    /// (role ARN, provider ARN) pairs of the Role attribute.
    pub roles: Vec<(String, String)>,
    pub session_name: String,
    pub session_duration: Option<i64>,
    /// `AuthnStatement SessionNotOnOrAfter`.
    pub session_not_on_or_after: Option<Epoch>,
    pub tags: Vec<Tag>,
    pub transitive_tag_keys: Vec<String>,
    pub source_identity: Option<String>,
}

fn invalid(m: &str) -> ServiceError {
    ServiceError::Modeled("InvalidIdentityToken", 400, m.to_string())
}

fn expired(m: &str) -> ServiceError {
    ServiceError::Modeled("ExpiredTokenException", 400, m.to_string())
}

fn rejected(m: &str) -> ServiceError {
    ServiceError::Modeled("IDPRejectedClaim", 403, m.to_string())
}

/// `xs:dateTime` (UTC `Z` or an offset; fractions ignored).
fn instant(s: &str) -> Option<Epoch> {
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .ok()?;
    Some(t.unix_timestamp())
}

fn time_attr(e: &Element, name: &str) -> Result<Option<Epoch>> {
    match e.attr(name) {
        None => Ok(None),
        Some(v) => instant(v)
            .map(Some)
            .ok_or_else(|| invalid(&format!("Invalid {name} in SAML assertion: {v}"))),
    }
}

/// The provider's entity id and signing certificates.
pub fn provider_keys(metadata: &str) -> Result<(String, Vec<crate::certs::Certificate>)> {
    let md = xmltree::parse(metadata)
        .map_err(|_| invalid("The SAML provider's metadata document could not be parsed."))?;
    let entity = md
        .descendants()
        .into_iter()
        .find(|e| e.is(MD, "EntityDescriptor"))
        .and_then(|e| e.attr("entityID"))
        .ok_or_else(|| invalid("The SAML provider's metadata names no entityID."))?
        .to_string();
    Ok((entity, xmldsig::metadata_certificates(&md)))
}

/// Decode, verify and read a base64 SAML response.
pub fn read(encoded: &str, metadata: &str, now: Epoch) -> Result<Assertion> {
    let clean: String = encoded.chars().filter(|c| !c.is_whitespace()).collect();
    let xml = B64
        .decode(clean.as_bytes())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| invalid("Invalid base64 SAMLResponse"))?;
    let doc = xmltree::parse(&xml).map_err(|_| invalid("Invalid SAML response"))?;
    if !doc.is(SAMLP, "Response") {
        return Err(invalid(
            "Invalid SAML response: the document is not a SAML 2.0 Response",
        ));
    }
    check_status(&doc)?;
    if doc
        .children_named(SAML, "EncryptedAssertion")
        .next()
        .is_some()
    {
        return Err(invalid(
            "Encrypted SAML assertions are not supported by keycard; configure the IdP to sign, not encrypt, the assertion.",
        ));
    }
    let assertion = doc
        .only_child(SAML, "Assertion")
        .ok_or_else(|| invalid("Invalid SAML response: exactly one Assertion is required"))?;
    unique_ids(&doc)?;
    let (entity, keys) = provider_keys(metadata)?;
    if keys.is_empty() {
        return Err(invalid(
            "The SAML provider's metadata has no signing certificate.",
        ));
    }
    verify_signed(&doc, assertion, &keys)?;
    let issuer = assertion
        .only_child(SAML, "Issuer")
        .map(|i| i.text().trim().to_string())
        .ok_or_else(|| invalid("The SAML assertion has no Issuer."))?;
    if issuer != entity {
        return Err(invalid(&format!(
            "Issuer '{issuer}' of the SAML assertion does not match the provider's entity '{entity}'."
        )));
    }
    check_age(&doc, now)?;
    check_conditions(assertion, now)?;
    let (subject, subject_type, recipient) = subject(assertion, now)?;
    let mut a = attributes(assertion)?;
    a.issuer = issuer;
    a.subject = subject;
    a.subject_type = subject_type;
    a.recipient = recipient;
    a.session_not_on_or_after = assertion
        .children_named(SAML, "AuthnStatement")
        .filter_map(|s| time_attr(s, "SessionNotOnOrAfter").ok().flatten())
        .min();
    Ok(a)
}

fn check_status(doc: &Element) -> Result<()> {
    let code = doc
        .only_child(SAMLP, "Status")
        .and_then(|s| s.only_child(SAMLP, "StatusCode"))
        .and_then(|c| c.attr("Value"));
    if code == Some("urn:oasis:names:tc:SAML:2.0:status:Success") {
        Ok(())
    } else {
        Err(invalid("The SAML response's status is not Success."))
    }
}

/// No two elements share an `ID` (a wrapped copy would).
fn unique_ids(doc: &Element) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for e in doc.descendants() {
        if let Some(id) = e.attr("ID")
            && !seen.insert(id)
        {
            return Err(invalid("Invalid SAML response: duplicate ID"));
        }
    }
    Ok(())
}

/// The assertion's own signature, or the response's (which covers it).
fn verify_signed(
    doc: &Element,
    assertion: &Element,
    keys: &[crate::certs::Certificate],
) -> Result<()> {
    let own = xmldsig::signatures(assertion).any(|s| xmldsig::verify(assertion, s, keys).is_ok());
    let whole = xmldsig::signatures(doc).any(|s| xmldsig::verify(doc, s, keys).is_ok());
    if own || whole {
        Ok(())
    } else {
        Err(invalid("Response signature invalid"))
    }
}

fn check_age(doc: &Element, now: Epoch) -> Result<()> {
    let issued = time_attr(doc, "IssueInstant")?
        .ok_or_else(|| invalid("The SAML response has no IssueInstant."))?;
    if issued > now + SKEW {
        return Err(rejected("The SAML response was issued in the future."));
    }
    if now - issued > MAX_AGE {
        return Err(expired(
            "Token must be redeemed within 5 minutes of issuance",
        ));
    }
    Ok(())
}

/// AWS's sign-in endpoint, global or regional, or its URN.
fn aws_audience(a: &str) -> bool {
    a == "urn:amazon:webservices"
        || a == "https://signin.aws.amazon.com/saml"
        || a.strip_prefix("https://")
            .and_then(|r| r.strip_suffix(".signin.aws.amazon.com/saml"))
            .is_some_and(|region| {
                !region.is_empty()
                    && region
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
}

fn check_conditions(assertion: &Element, now: Epoch) -> Result<()> {
    let Some(c) = assertion.only_child(SAML, "Conditions") else {
        return Ok(());
    };
    if time_attr(c, "NotBefore")?.is_some_and(|t| t > now + SKEW) {
        return Err(rejected("The SAML assertion is not yet valid (NotBefore)."));
    }
    if time_attr(c, "NotOnOrAfter")?.is_some_and(|t| now >= t) {
        return Err(expired("The SAML assertion has expired (NotOnOrAfter)."));
    }
    for r in c.children_named(SAML, "AudienceRestriction") {
        if !r
            .children_named(SAML, "Audience")
            .any(|a| aws_audience(a.text().trim()))
        {
            return Err(invalid(
                "The SAML assertion's audience restriction does not include urn:amazon:webservices or https://signin.aws.amazon.com/saml.",
            ));
        }
    }
    Ok(())
}

/// NameID, its type, and a bearer confirmation's recipient valid now.
fn subject(assertion: &Element, now: Epoch) -> Result<(String, String, String)> {
    let s = assertion
        .only_child(SAML, "Subject")
        .ok_or_else(|| invalid("The SAML assertion has no Subject."))?;
    let name_id = s
        .only_child(SAML, "NameID")
        .ok_or_else(|| invalid("The SAML assertion's Subject has no NameID."))?;
    let sub = name_id.text().trim().to_string();
    let format = name_id
        .attr("Format")
        .unwrap_or("urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified");
    let sub_type = match format {
        "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent" => "persistent",
        "urn:oasis:names:tc:SAML:2.0:nameid-format:transient" => "transient",
        f => f,
    }
    .to_string();
    let mut recipient = None;
    for c in s.children_named(SAML, "SubjectConfirmation") {
        if c.attr("Method") != Some("urn:oasis:names:tc:SAML:2.0:cm:bearer") {
            continue;
        }
        let Some(d) = c.only_child(SAML, "SubjectConfirmationData") else {
            continue;
        };
        if time_attr(d, "NotOnOrAfter")?.is_some_and(|t| now >= t) {
            return Err(expired(
                "The SAML assertion has expired (SubjectConfirmationData NotOnOrAfter).",
            ));
        }
        if let Some(r) = d.attr("Recipient").filter(|r| aws_audience(r)) {
            recipient = Some(r.to_string());
        }
    }
    let recipient = recipient.ok_or_else(|| {
        invalid("The SAML assertion has no bearer SubjectConfirmation whose Recipient is https://signin.aws.amazon.com/saml.")
    })?;
    Ok((sub, sub_type, recipient))
}

/// The values of each `Attribute` (by Name) of every AttributeStatement.
fn attribute_values(assertion: &Element) -> Vec<(String, Vec<String>)> {
    assertion
        .children_named(SAML, "AttributeStatement")
        .flat_map(|s| s.children_named(SAML, "Attribute"))
        .filter_map(|a| {
            let vals = a
                .children_named(SAML, "AttributeValue")
                .map(|v| v.text().trim().to_string())
                .collect();
            Some((a.attr("Name")?.to_string(), vals))
        })
        .collect()
}

/// `role-arn,provider-arn` in either order.
fn role_pair(v: &str) -> Option<(String, String)> {
    let (a, b) = v.split_once(',')?;
    let (a, b) = (a.trim().to_string(), b.trim().to_string());
    if a.contains(":saml-provider/") && b.contains(":role/") {
        Some((b, a))
    } else if a.contains(":role/") && b.contains(":saml-provider/") {
        Some((a, b))
    } else {
        None
    }
}

fn attributes(assertion: &Element) -> Result<Assertion> {
    let mut a = Assertion::default();
    let mut session_name = None;
    for (name, vals) in attribute_values(assertion) {
        let Some(short) = name.strip_prefix(ATTR) else {
            continue;
        };
        let first = vals.first().cloned();
        match short {
            "Role" => a.roles.extend(vals.iter().filter_map(|v| role_pair(v))),
            "RoleSessionName" => session_name = first,
            "SessionDuration" => {
                a.session_duration = match first.as_deref().map(str::parse::<i64>) {
                    Some(Ok(d)) if (900..=43_200).contains(&d) => Some(d),
                    None => None,
                    _ => return Err(invalid("Invalid SessionDuration in SAML assertion")),
                }
            }
            "TransitiveTagKeys" => a.transitive_tag_keys = vals,
            "SourceIdentity" => a.source_identity = first,
            s => {
                if let (Some(key), Some(value)) = (s.strip_prefix("PrincipalTag:"), first) {
                    a.tags.push(Tag {
                        key: key.to_string(),
                        value,
                    });
                }
            }
        }
    }
    if a.roles.is_empty() {
        return Err(invalid(
            "The SAML assertion has no https://aws.amazon.com/SAML/Attributes/Role attribute.",
        ));
    }
    a.session_name = session_name.ok_or_else(|| {
        invalid("The SAML assertion has no https://aws.amazon.com/SAML/Attributes/RoleSessionName attribute.")
    })?;
    crate::sts::validate_session_name(&a.session_name)
        .map_err(|_| invalid("Invalid RoleSessionName in SAML assertion"))?;
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_pairs_in_either_order() {
        let r = "arn:aws:iam::123456789012:role/R";
        let p = "arn:aws:iam::123456789012:saml-provider/P";
        assert_eq!(role_pair(&format!("{r},{p}")), Some((r.into(), p.into())));
        assert_eq!(role_pair(&format!("{p}, {r}")), Some((r.into(), p.into())));
        assert_eq!(role_pair(r), None);
        assert_eq!(role_pair(&format!("{r},{r}")), None);
    }

    #[test]
    fn audiences() {
        assert!(aws_audience("https://signin.aws.amazon.com/saml"));
        assert!(aws_audience("https://eu-west-1.signin.aws.amazon.com/saml"));
        assert!(aws_audience("urn:amazon:webservices"));
        assert!(!aws_audience(
            "https://evil.example/.signin.aws.amazon.com/saml"
        ));
        assert!(!aws_audience("https://signin.aws.amazon.com/saml/x"));
    }

    #[test]
    fn garbage_is_invalid_identity_token() {
        for doc in [
            "",
            "!!!",
            &B64.encode("<r/>"),
            &B64.encode("<!DOCTYPE x><r/>"),
        ] {
            let e = read(doc, "", 0).unwrap_err();
            assert!(
                matches!(e, ServiceError::Modeled("InvalidIdentityToken", 400, _)),
                "{doc}"
            );
        }
    }
}
