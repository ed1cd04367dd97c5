//! Policy variables (`${aws:username}`, `${aws:PrincipalTag/team, 'none'}`, `${*}` ...).
//!
//! Only policies with `Version: 2012-10-17` substitute variables; elsewhere the text is literal.

use crate::glob::{GTok, tokenize};

/// A piece of an element containing variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// Raw text: in wildcard contexts `*` and `?` keep their meaning.
    Text(String),
    /// `${*}`, `${?}`, `${$}`: a literal character.
    Escape(char),
    /// `${key}` or `${key, 'default'}`; key stored lower-cased, `name` as written.
    Var {
        key: String,
        name: String,
        default: Option<String>,
    },
}

/// A policy element with at least one variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Template {
    pub(crate) parts: Vec<Part>,
}

/// Something that resolves variable keys (lower-cased) to a single value.
pub(crate) trait Vars {
    fn var(&self, key_lc: &str) -> Option<&str>;
}

impl Template {
    /// Split text into parts; `None` when it contains no `${…}` at all.
    pub(crate) fn parse(text: &str) -> Option<Template> {
        if !text.contains("${") {
            return None;
        }
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(pos) = rest.find("${") {
            let after = &rest[pos + 2..];
            let Some(end) = after.find('}') else { break };
            lit.push_str(&rest[..pos]);
            let inner = &after[..end];
            match parse_var(inner) {
                Some(p) => {
                    if !lit.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut lit)));
                    }
                    parts.push(p);
                }
                None => {
                    // Not a variable: keep the text literally.
                    lit.push_str("${");
                    lit.push_str(inner);
                    lit.push('}');
                }
            }
            rest = &after[end + 1..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Text(lit));
        }
        Some(Template { parts })
    }

    /// Does the template contain a real variable (not only escapes)?
    pub(crate) fn has_vars(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Var { .. }))
    }

    /// The variables' keys as written, in order (for `GetContextKeysFor*Policy`).
    pub(crate) fn variable_names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var { name, .. } => Some(name.as_str()),
            _ => None,
        })
    }

    /// Resolve to plain text (`None` if a variable has no value and no default).
    pub(crate) fn resolve_string(&self, vars: &dyn Vars) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Escape(c) => out.push(*c),
                Part::Var { key, default, .. } => {
                    out.push_str(lookup(vars, key, default.as_deref())?)
                }
            }
        }
        Some(out)
    }

    /// Resolve to wildcard tokens: raw text keeps wildcards, substituted values are literal.
    pub(crate) fn resolve_tokens(&self, vars: &dyn Vars) -> Option<Vec<GTok>> {
        let mut out = Vec::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => tokenize(t, &mut out),
                Part::Escape(c) => out.push(GTok::Lit(*c)),
                Part::Var { key, default, .. } => out.extend(
                    lookup(vars, key, default.as_deref())?
                        .chars()
                        .map(GTok::Lit),
                ),
            }
        }
        Some(out)
    }
}

fn lookup<'a>(vars: &'a dyn Vars, key: &str, default: Option<&'a str>) -> Option<&'a str> {
    vars.var(key).or(default)
}

/// Parse the inside of `${…}`.
fn parse_var(inner: &str) -> Option<Part> {
    match inner {
        "*" => return Some(Part::Escape('*')),
        "?" => return Some(Part::Escape('?')),
        "$" => return Some(Part::Escape('$')),
        _ => {}
    }
    let (key, default) = match inner.split_once(',') {
        Some((k, d)) => {
            let d = d.trim();
            let d = d.strip_prefix('\'')?.strip_suffix('\'')?;
            (k.trim(), Some(d.to_string()))
        }
        None => (inner.trim(), None),
    };
    if key.is_empty()
        || !key.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '-' | '_' | '.' | '@' | '+' | '=')
        })
    {
        return None;
    }
    Some(Part::Var {
        key: key.to_lowercase(),
        name: key.to_string(),
        default,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct M(HashMap<&'static str, &'static str>);
    impl Vars for M {
        fn var(&self, key_lc: &str) -> Option<&str> {
            self.0.get(key_lc).copied()
        }
    }

    #[test]
    fn parse_and_resolve() {
        let m = M(HashMap::from([("aws:username", "al*ce")]));
        assert!(Template::parse("plain").is_none());
        let t = Template::parse("home/${aws:username}/*").unwrap();
        assert!(t.has_vars());
        assert_eq!(t.resolve_string(&m).unwrap(), "home/al*ce/*");
        let toks = t.resolve_tokens(&m).unwrap();
        assert_eq!(toks[7], GTok::Lit('*'));
        assert_eq!(*toks.last().unwrap(), GTok::Star);
        let t = Template::parse("${aws:PrincipalTag/team, 'none'}").unwrap();
        assert_eq!(t.resolve_string(&m).unwrap(), "none");
        let t = Template::parse("${aws:userid}").unwrap();
        assert!(t.resolve_string(&m).is_none());
        let t = Template::parse("a${*}b${?}${$}").unwrap();
        assert!(!t.has_vars());
        assert_eq!(t.resolve_string(&m).unwrap(), "a*b?$");
        let t = Template::parse("${bad key}x${").unwrap();
        assert_eq!(t.resolve_string(&m).unwrap(), "${bad key}x${");
    }
}
