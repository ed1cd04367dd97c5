//! Condition operators: compiled once, evaluated against the request context.

use std::net::IpAddr;

use crate::PolicyError;
use crate::date::parse_date;
use crate::glob::{ArnPattern, Glob, match_tokens};
use crate::template::{Template, Vars};

/// The operator family (the negation is kept separately).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Base {
    Str,
    StrIc,
    Like,
    NumEq,
    NumLt,
    NumLe,
    NumGt,
    NumGe,
    DateEq,
    DateLt,
    DateLe,
    DateGt,
    DateGe,
    Bool,
    Binary,
    Ip,
    Arn,
    Null,
}

/// `ForAllValues:` / `ForAnyValue:` qualifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SetOp {
    Single,
    ForAll,
    ForAny,
}

/// An IPv4 or IPv6 network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IpNet {
    V4(u32, u8),
    V6(u128, u8),
}

impl IpNet {
    pub(crate) fn parse(s: &str) -> Option<IpNet> {
        let s = s.trim();
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => {
                if l.is_empty() || !l.bytes().all(|b| b.is_ascii_digit()) || l.len() > 3 {
                    return None;
                }
                (a, Some(l.parse::<u8>().ok()?))
            }
            None => (s, None),
        };
        match addr.parse::<IpAddr>().ok()? {
            IpAddr::V4(a) => {
                let l = len.unwrap_or(32);
                (l <= 32).then_some(IpNet::V4(u32::from(a), l))
            }
            IpAddr::V6(a) => {
                let l = len.unwrap_or(128);
                (l <= 128).then_some(IpNet::V6(u128::from(a), l))
            }
        }
    }

    /// Does this network contain the address of `other` (a host or network)?
    pub(crate) fn contains(&self, other: &IpNet) -> bool {
        match (*self, *other) {
            (IpNet::V4(n, l), IpNet::V4(a, _)) => {
                let mask = if l == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(l))
                };
                (n & mask) == (a & mask)
            }
            (IpNet::V6(n, l), IpNet::V6(a, _)) => {
                let mask = if l == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(l))
                };
                (n & mask) == (a & mask)
            }
            // An IPv4-mapped IPv6 request address matches IPv4 networks.
            (IpNet::V4(..), IpNet::V6(a, _)) => {
                let mapped = std::net::Ipv6Addr::from(a).to_ipv4_mapped();
                mapped.is_some_and(|v4| self.contains(&IpNet::V4(u32::from(v4), 32)))
            }
            (IpNet::V6(..), IpNet::V4(..)) => false,
        }
    }
}

/// One compiled condition value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum CVal {
    Str(String),
    Glob(Glob),
    Num(f64),
    Date(i64),
    Bool(bool),
    Ip(IpNet),
    Arn(ArnPattern),
    /// A value containing policy variables, resolved at evaluation time.
    Tpl(Template),
    /// A value that can never match (e.g. an unparsable number).
    Invalid,
}

/// One (operator, key, values) triple of a `Condition` block.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Condition {
    pub(crate) base: Base,
    pub(crate) negated: bool,
    pub(crate) set: SetOp,
    pub(crate) if_exists: bool,
    pub(crate) key_lc: String,
    /// The key as written (reported by the simulator).
    pub(crate) key: String,
    pub(crate) values: Vec<CVal>,
}

/// Request-side values of a key.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Values<'a> {
    Many(&'a [String]),
    One(&'a str),
}

impl<'a> Values<'a> {
    fn len(&self) -> usize {
        match self {
            Values::Many(v) => v.len(),
            Values::One(_) => 1,
        }
    }

    fn iter(self) -> impl Iterator<Item = &'a str> {
        let (many, one) = match self {
            Values::Many(v) => (v, None),
            Values::One(s) => (&[][..], Some(s)),
        };
        many.iter().map(String::as_str).chain(one)
    }
}

/// The request context as seen by conditions.
pub(crate) trait Lookup: Vars {
    fn values(&self, key_lc: &str) -> Option<Values<'_>>;
}

/// Parse an operator name into (family, negated, qualifier, IfExists).
pub(crate) fn parse_operator(name: &str) -> Option<(Base, bool, SetOp, bool)> {
    let lower = name.to_ascii_lowercase();
    let (set, rest) = if let Some(r) = lower.strip_prefix("forallvalues:") {
        (SetOp::ForAll, r)
    } else if let Some(r) = lower.strip_prefix("foranyvalue:") {
        (SetOp::ForAny, r)
    } else {
        (SetOp::Single, lower.as_str())
    };
    let (if_exists, rest) = match rest.strip_suffix("ifexists") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let (base, neg) = match rest {
        "stringequals" => (Base::Str, false),
        "stringnotequals" => (Base::Str, true),
        "stringequalsignorecase" => (Base::StrIc, false),
        "stringnotequalsignorecase" => (Base::StrIc, true),
        "stringlike" => (Base::Like, false),
        "stringnotlike" => (Base::Like, true),
        "numericequals" => (Base::NumEq, false),
        "numericnotequals" => (Base::NumEq, true),
        "numericlessthan" => (Base::NumLt, false),
        "numericlessthanequals" => (Base::NumLe, false),
        "numericgreaterthan" => (Base::NumGt, false),
        "numericgreaterthanequals" => (Base::NumGe, false),
        "dateequals" => (Base::DateEq, false),
        "datenotequals" => (Base::DateEq, true),
        "datelessthan" => (Base::DateLt, false),
        "datelessthanequals" => (Base::DateLe, false),
        "dategreaterthan" => (Base::DateGt, false),
        "dategreaterthanequals" => (Base::DateGe, false),
        "bool" => (Base::Bool, false),
        "binaryequals" => (Base::Binary, false),
        "ipaddress" => (Base::Ip, false),
        "notipaddress" => (Base::Ip, true),
        "arnequals" | "arnlike" => (Base::Arn, false),
        "arnnotequals" | "arnnotlike" => (Base::Arn, true),
        "null" => (Base::Null, false),
        _ => return None,
    };
    Some((base, neg, set, if_exists))
}

impl Condition {
    /// Compile one operator/key/values triple.
    pub(crate) fn compile(
        op: &str,
        key: &str,
        raw_values: &[String],
        variables: bool,
    ) -> Result<Condition, PolicyError> {
        let (base, negated, set, if_exists) = parse_operator(op)
            .ok_or_else(|| PolicyError::malformed(format!("Invalid Condition type : {op}")))?;
        if base == Base::Null && if_exists {
            return Err(PolicyError::malformed(format!(
                "Invalid Condition type : {op}. The Null operator cannot be used with IfExists."
            )));
        }
        if key.is_empty() {
            return Err(PolicyError::malformed("Condition key must not be empty."));
        }
        let values = raw_values
            .iter()
            .map(|v| {
                if variables && let Some(t) = Template::parse(v) {
                    if t.has_vars() {
                        return CVal::Tpl(t);
                    }
                    // Only escapes: resolve once.
                    return resolve_literal(base, &t, &NoVars).unwrap_or(CVal::Invalid);
                }
                compile_literal(base, v)
            })
            .collect();
        Ok(Condition {
            base,
            negated,
            set,
            if_exists,
            key_lc: key.to_lowercase(),
            key: key.to_string(),
            values,
        })
    }

    /// Variables in the condition's values, as written.
    pub(crate) fn variable_names(&self) -> impl Iterator<Item = &str> {
        self.values.iter().flat_map(|v| {
            match v {
                CVal::Tpl(t) => Some(t.variable_names()),
                _ => None,
            }
            .into_iter()
            .flatten()
        })
    }

    /// Evaluate against the request.
    pub(crate) fn eval(&self, ctx: &dyn Lookup) -> bool {
        let present = ctx.values(&self.key_lc).filter(|v| v.len() > 0);
        if self.base == Base::Null {
            return self.values.iter().any(|v| {
                let want_absent = match v {
                    CVal::Bool(b) => Some(*b),
                    CVal::Tpl(t) => t.resolve_string(ctx).and_then(|s| parse_bool(&s)),
                    _ => None,
                };
                want_absent.is_some_and(|absent| absent == present.is_none())
            });
        }
        match present {
            None => {
                if self.if_exists {
                    true
                } else {
                    match self.set {
                        SetOp::ForAll => true,
                        SetOp::ForAny => false,
                        SetOp::Single => self.negated,
                    }
                }
            }
            // A negated operator with a policy variable that has no value fails: "any attempt
            // to match it fails and causes the statement to be invalid" (IAM User Guide,
            // policy variables). Without this, NOR over "no match" would pass.
            Some(_) if self.negated && self.has_unresolved(ctx) => false,
            Some(vals) => match self.set {
                SetOp::Single => {
                    let any = vals.iter().any(|r| self.any_match(r, ctx));
                    any != self.negated
                }
                SetOp::ForAny => vals.iter().any(|r| self.any_match(r, ctx) != self.negated),
                SetOp::ForAll => vals.iter().all(|r| self.any_match(r, ctx) != self.negated),
            },
        }
    }

    /// Does a policy value contain a variable that can't be resolved for this request?
    fn has_unresolved(&self, vars: &dyn Vars) -> bool {
        self.values.iter().any(|v| match v {
            CVal::Tpl(t) => resolve_literal(self.base, t, vars).is_none(),
            _ => false,
        })
    }

    /// Does the request value `req` match any policy value (positive form of the operator)?
    fn any_match(&self, req: &str, vars: &dyn Vars) -> bool {
        match self.base {
            Base::Str | Base::Binary => self.values.iter().any(|v| match v {
                CVal::Str(s) => s == req,
                CVal::Tpl(t) => t.resolve_string(vars).is_some_and(|s| s == req),
                _ => false,
            }),
            Base::StrIc => {
                let lc = req.to_lowercase();
                self.values.iter().any(|v| match v {
                    CVal::Str(s) => *s == lc,
                    CVal::Tpl(t) => t
                        .resolve_string(vars)
                        .is_some_and(|s| s.to_lowercase() == lc),
                    _ => false,
                })
            }
            Base::Like => self.values.iter().any(|v| match v {
                CVal::Glob(g) => g.matches(req),
                CVal::Tpl(t) => t
                    .resolve_tokens(vars)
                    .is_some_and(|ts| match_tokens(&ts, req)),
                _ => false,
            }),
            Base::Arn => {
                let parts = crate::glob::arn_parts(req);
                self.values.iter().any(|v| match v {
                    CVal::Arn(a) => a.matches(req, parts.as_ref()),
                    CVal::Tpl(t) => t.resolve_tokens(vars).is_some_and(|ts| {
                        ArnPattern::from_tokens(&ts).matches(req, parts.as_ref())
                    }),
                    _ => false,
                })
            }
            Base::NumEq | Base::NumLt | Base::NumLe | Base::NumGt | Base::NumGe => {
                let Some(r) = parse_num(req) else {
                    return false;
                };
                self.each_literal(vars, |v| match v {
                    CVal::Num(p) => match self.base {
                        Base::NumEq => r == *p,
                        Base::NumLt => r < *p,
                        Base::NumLe => r <= *p,
                        Base::NumGt => r > *p,
                        _ => r >= *p,
                    },
                    _ => false,
                })
            }
            Base::DateEq | Base::DateLt | Base::DateLe | Base::DateGt | Base::DateGe => {
                let Some(r) = parse_date(req) else {
                    return false;
                };
                self.each_literal(vars, |v| match v {
                    CVal::Date(p) => match self.base {
                        Base::DateEq => r == *p,
                        Base::DateLt => r < *p,
                        Base::DateLe => r <= *p,
                        Base::DateGt => r > *p,
                        _ => r >= *p,
                    },
                    _ => false,
                })
            }
            Base::Bool => {
                let Some(r) = parse_bool(req) else {
                    return false;
                };
                self.each_literal(vars, |v| matches!(v, CVal::Bool(p) if *p == r))
            }
            Base::Ip => {
                let Some(r) = IpNet::parse(req) else {
                    return false;
                };
                self.each_literal(vars, |v| matches!(v, CVal::Ip(n) if n.contains(&r)))
            }
            Base::Null => false,
        }
    }

    /// Apply `f` to each policy value, resolving templates to literal values first.
    fn each_literal(&self, vars: &dyn Vars, f: impl Fn(&CVal) -> bool) -> bool {
        self.values.iter().any(|v| match v {
            CVal::Tpl(t) => resolve_literal(self.base, t, vars).is_some_and(|c| f(&c)),
            other => f(other),
        })
    }
}

struct NoVars;
impl Vars for NoVars {
    fn var(&self, _key_lc: &str) -> Option<&str> {
        None
    }
}

fn resolve_literal(base: Base, t: &Template, vars: &dyn Vars) -> Option<CVal> {
    match base {
        Base::Like => Some(CVal::Glob(Glob::from_tokens(&t.resolve_tokens(vars)?))),
        Base::Arn => Some(CVal::Arn(ArnPattern::from_tokens(&t.resolve_tokens(vars)?))),
        _ => Some(compile_literal(base, &t.resolve_string(vars)?)),
    }
}

fn compile_literal(base: Base, v: &str) -> CVal {
    match base {
        Base::Str | Base::Binary => CVal::Str(v.to_string()),
        Base::StrIc => CVal::Str(v.to_lowercase()),
        Base::Like => CVal::Glob(Glob::new(v)),
        Base::Arn => CVal::Arn(ArnPattern::new(v)),
        Base::NumEq | Base::NumLt | Base::NumLe | Base::NumGt | Base::NumGe => {
            parse_num(v).map_or(CVal::Invalid, CVal::Num)
        }
        Base::DateEq | Base::DateLt | Base::DateLe | Base::DateGt | Base::DateGe => {
            parse_date(v).map_or(CVal::Invalid, CVal::Date)
        }
        Base::Bool | Base::Null => parse_bool(v).map_or(CVal::Invalid, CVal::Bool),
        Base::Ip => IpNet::parse(v).map_or(CVal::Invalid, CVal::Ip),
    }
}

fn parse_num(s: &str) -> Option<f64> {
    let v: f64 = s.trim().parse().ok()?;
    (!v.is_nan()).then_some(v)
}

fn parse_bool(s: &str) -> Option<bool> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr() {
        let n = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(n.contains(&IpNet::parse("10.1.2.3").unwrap()));
        assert!(!n.contains(&IpNet::parse("11.1.2.3").unwrap()));
        let all = IpNet::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(&IpNet::parse("1.2.3.4").unwrap()));
        let v6 = IpNet::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(&IpNet::parse("2001:db8:1::1").unwrap()));
        assert!(!v6.contains(&IpNet::parse("2001:db9::1").unwrap()));
        assert!(!v6.contains(&IpNet::parse("10.0.0.1").unwrap()));
        assert!(n.contains(&IpNet::parse("::ffff:10.0.0.1").unwrap()));
        assert!(IpNet::parse("10.0.0.0/33").is_none());
        assert!(IpNet::parse("10.0.0.0/").is_none());
        assert!(IpNet::parse("nope").is_none());
        let host = IpNet::parse("192.0.2.7").unwrap();
        assert!(host.contains(&IpNet::parse("192.0.2.7").unwrap()));
        assert!(!host.contains(&IpNet::parse("192.0.2.8").unwrap()));
    }

    #[test]
    fn operator_names() {
        assert_eq!(
            parse_operator("ForAllValues:StringLikeIfExists"),
            Some((Base::Like, false, SetOp::ForAll, true))
        );
        assert_eq!(
            parse_operator("NotIpAddress"),
            Some((Base::Ip, true, SetOp::Single, false))
        );
        assert!(parse_operator("StringEqualz").is_none());
        assert!(Condition::compile("NullIfExists", "k", &[], true).is_err());
    }
}
