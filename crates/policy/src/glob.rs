//! Wildcard patterns (`*`, `?`) compiled once, and ARN patterns matched part by part.

/// One token of a wildcard pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GTok {
    /// A literal character (also used for substituted variable values and `${*}` escapes).
    Lit(char),
    /// `*`: any run of characters, possibly empty.
    Star,
    /// `?`: exactly one character.
    One,
}

/// Tokenize raw pattern text: `*` and `?` are wildcards, everything else literal.
pub(crate) fn tokenize(text: &str, out: &mut Vec<GTok>) {
    out.extend(text.chars().map(|c| match c {
        '*' => GTok::Star,
        '?' => GTok::One,
        c => GTok::Lit(c),
    }));
}

/// A compiled wildcard pattern, with fast paths for the common shapes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Glob {
    /// `*`
    Any,
    /// No wildcard.
    Exact(Box<str>),
    /// `literal*`
    Prefix(Box<str>),
    /// `*literal`
    Suffix(Box<str>),
    /// Anything else.
    General(Box<[GTok]>),
}

impl Glob {
    /// Compile raw pattern text.
    pub(crate) fn new(text: &str) -> Glob {
        let mut toks = Vec::with_capacity(text.len());
        tokenize(text, &mut toks);
        Glob::from_tokens(&toks)
    }

    /// Compile a token sequence.
    pub(crate) fn from_tokens(toks: &[GTok]) -> Glob {
        let lit = |ts: &[GTok]| -> Option<String> {
            ts.iter()
                .map(|t| match t {
                    GTok::Lit(c) => Some(*c),
                    _ => None,
                })
                .collect()
        };
        if toks.iter().all(|t| *t == GTok::Star) && !toks.is_empty() {
            return Glob::Any;
        }
        if let Some(s) = lit(toks) {
            return Glob::Exact(s.into());
        }
        if let Some((GTok::Star, rest)) = toks.split_last()
            && let Some(s) = lit(rest)
        {
            return Glob::Prefix(s.into());
        }
        if let Some((GTok::Star, rest)) = toks.split_first()
            && let Some(s) = lit(rest)
        {
            return Glob::Suffix(s.into());
        }
        Glob::General(toks.into())
    }

    /// Does the pattern match the whole of `s`?
    pub(crate) fn matches(&self, s: &str) -> bool {
        match self {
            Glob::Any => true,
            Glob::Exact(e) => **e == *s,
            Glob::Prefix(p) => s.starts_with(&**p),
            Glob::Suffix(p) => s.ends_with(&**p),
            Glob::General(t) => match_tokens(t, s),
        }
    }

    /// The literal prefix before the first wildcard (used for the service index).
    pub(crate) fn literal_prefix(&self) -> Option<String> {
        match self {
            Glob::Any | Glob::Suffix(_) => None,
            Glob::Exact(e) => Some(e.to_string()),
            Glob::Prefix(p) => Some(p.to_string()),
            Glob::General(t) => {
                let s: String = t
                    .iter()
                    .map_while(|t| match t {
                        GTok::Lit(c) => Some(*c),
                        _ => None,
                    })
                    .collect();
                Some(s)
            }
        }
    }
}

/// Iterative wildcard match with single-star backtracking: O(len(p) * len(s)) worst case,
/// no recursion, no allocation.
pub(crate) fn match_tokens(pat: &[GTok], s: &str) -> bool {
    let mut p = 0usize;
    let mut i = 0usize;
    // (pattern index after the last star, input index the star currently covers up to)
    let mut star: Option<(usize, usize)> = None;
    loop {
        let cur = s.get(i..).and_then(|r| r.chars().next());
        let Some(c) = cur else { break };
        if let Some(t) = pat.get(p) {
            match *t {
                GTok::Star => {
                    star = Some((p + 1, i));
                    p += 1;
                    continue;
                }
                GTok::One => {
                    p += 1;
                    i += c.len_utf8();
                    continue;
                }
                GTok::Lit(l) if l == c => {
                    p += 1;
                    i += c.len_utf8();
                    continue;
                }
                GTok::Lit(_) => {}
            }
        }
        match star {
            Some((sp, si)) => {
                let w = s
                    .get(si..)
                    .and_then(|r| r.chars().next())
                    .map_or(1, char::len_utf8);
                p = sp;
                i = si + w;
                star = Some((sp, si + w));
            }
            None => return false,
        }
    }
    pat.get(p..)
        .is_some_and(|rest| rest.iter().all(|t| *t == GTok::Star))
}

/// Split `s` into the six ARN parts (the last keeps any further colons).
pub(crate) fn arn_parts(s: &str) -> Option<[&str; 6]> {
    let mut it = s.splitn(6, ':');
    let parts = [
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
    ];
    Some(parts)
}

/// A resource / ARN pattern: six parts matched separately when the pattern is ARN-shaped,
/// the whole string otherwise (`*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ArnPattern {
    Whole(Glob),
    Parts(Box<[Glob; 6]>),
}

impl ArnPattern {
    pub(crate) fn new(text: &str) -> ArnPattern {
        let mut toks = Vec::with_capacity(text.len());
        tokenize(text, &mut toks);
        ArnPattern::from_tokens(&toks)
    }

    pub(crate) fn from_tokens(toks: &[GTok]) -> ArnPattern {
        let mut parts: Vec<&[GTok]> = Vec::with_capacity(6);
        let mut start = 0usize;
        for (i, t) in toks.iter().enumerate() {
            if parts.len() == 5 {
                break;
            }
            if *t == GTok::Lit(':') {
                parts.push(&toks[start..i]);
                start = i + 1;
            }
        }
        if parts.len() == 5 {
            parts.push(&toks[start..]);
            let g = |i: usize| Glob::from_tokens(parts[i]);
            ArnPattern::Parts(Box::new([g(0), g(1), g(2), g(3), g(4), g(5)]))
        } else {
            ArnPattern::Whole(Glob::from_tokens(toks))
        }
    }

    /// Match against a resource; `parts` is `arn_parts(resource)`, computed once per request.
    pub(crate) fn matches(&self, resource: &str, parts: Option<&[&str; 6]>) -> bool {
        match self {
            ArnPattern::Whole(g) => g.matches(resource),
            ArnPattern::Parts(gs) => match parts {
                Some(ps) => gs.iter().zip(ps.iter()).all(|(g, p)| g.matches(p)),
                None => false,
            },
        }
    }

    #[cfg(test)]
    pub(crate) fn matches_str(&self, resource: &str) -> bool {
        self.matches(resource, arn_parts(resource).as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_shapes() {
        assert_eq!(Glob::new("*"), Glob::Any);
        assert_eq!(Glob::new("**"), Glob::Any);
        assert!(matches!(Glob::new("abc"), Glob::Exact(_)));
        assert!(matches!(Glob::new("abc*"), Glob::Prefix(_)));
        assert!(matches!(Glob::new("*abc"), Glob::Suffix(_)));
        assert!(matches!(Glob::new("a*b"), Glob::General(_)));
        assert!(matches!(Glob::new(""), Glob::Exact(_)));
    }

    #[test]
    fn glob_matching() {
        let cases = [
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a*c", "ac", true),
            ("a*c", "abbbc", true),
            ("a*c", "abbbd", false),
            ("*b*", "abc", true),
            ("*b*", "ac", false),
            ("a*b*c", "aXbYbZc", true),
            ("??", "é!", true),
            ("?", "é", true),
            ("*é", "aé", true),
            ("a**", "a", true),
            ("s3:get*", "s3:getobject", true),
        ];
        for (p, s, want) in cases {
            assert_eq!(Glob::new(p).matches(s), want, "{p} vs {s}");
            let mut t = Vec::new();
            tokenize(p, &mut t);
            assert_eq!(match_tokens(&t, s), want, "tokens {p} vs {s}");
        }
    }

    #[test]
    fn literal_tokens_are_not_wildcards() {
        let toks = [GTok::Lit('a'), GTok::Lit('*')];
        let g = Glob::from_tokens(&toks);
        assert!(g.matches("a*"));
        assert!(!g.matches("ab"));
    }

    #[test]
    fn arn_part_by_part() {
        let p = ArnPattern::new("arn:aws:s3:::*");
        assert!(p.matches_str("arn:aws:s3:::bucket/key:with:colons"));
        assert!(!p.matches_str("arn:aws:s3:us-east-1::bucket"));
        let p = ArnPattern::new("arn:aws:iam::*:role/*");
        assert!(p.matches_str("arn:aws:iam::123456789012:role/x"));
        assert!(!p.matches_str("arn:aws:iam::123456789012:user/x"));
        let p = ArnPattern::new("*");
        assert!(p.matches_str("anything"));
        let p = ArnPattern::new("arn:aws:ec2:*:*:instance/*");
        assert!(p.matches_str("arn:aws:ec2:us-east-1:1:instance/i-1"));
        assert!(!p.matches_str("not-an-arn"));
    }
}
