//! Where each statement sits in the policy text: the line and column of its
//! opening `{` and closing `}`. Computed once at parse time (one pass over the
//! already validated JSON), so evaluation only copies two positions per hit.

use serde::{Deserialize, Serialize};

/// A place in the policy text: 1-based line, 1-based column (in characters).
/// `\n`, `\r\n` and a lone `\r` each end a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub column: u32,
}

/// A statement's opening and closing braces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Span {
    /// The statement's `{`.
    pub start: Position,
    /// The statement's `}`.
    pub end: Position,
}

/// Spans of the statements of a valid JSON policy document, in document order.
/// A document serde_json accepted always yields one span per statement; the
/// caller drops the list if the counts ever disagree.
pub(crate) fn statement_spans(json: &str) -> Vec<Span> {
    let mut s = Scanner {
        b: json.as_bytes(),
        i: 0,
    };
    let offsets = s.top_level(json);
    to_spans(json, &offsets)
}

/// Byte-level walk of valid JSON: only what is needed to find the braces.
struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// Skip a string starting at `"`; returns the byte range including quotes.
    fn string(&mut self) -> (usize, usize) {
        let start = self.i;
        self.i += 1;
        while let Some(c) = self.peek() {
            self.i += if c == b'\\' { 2 } else { 1 };
            if c == b'"' {
                break;
            }
        }
        (start, self.i)
    }

    /// Skip any value.
    fn value(&mut self) {
        self.ws();
        match self.peek() {
            Some(b'"') => {
                self.string();
            }
            Some(b'{' | b'[') => self.composite(),
            _ => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.i += 1;
                }
            }
        }
    }

    /// Skip an object or array; `self.i` ends just past its closing bracket.
    fn composite(&mut self) {
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            match c {
                b'"' => {
                    self.string();
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        self.i += 1;
                        return;
                    }
                }
                _ => {}
            }
            self.i += 1;
        }
    }

    /// An object value: its `{` and `}` offsets.
    fn object_at(&mut self, out: &mut Vec<usize>) {
        let open = self.i;
        self.composite();
        out.push(open);
        out.push(self.i.saturating_sub(1));
    }

    /// The `Statement` value: one object, or an array of them.
    fn statements(&mut self, out: &mut Vec<usize>) {
        self.ws();
        match self.peek() {
            Some(b'{') => self.object_at(out),
            Some(b'[') => {
                self.i += 1;
                loop {
                    self.ws();
                    match self.peek() {
                        None => return,
                        Some(b']') => {
                            self.i += 1;
                            return;
                        }
                        Some(b',') => self.i += 1,
                        Some(b'{') => self.object_at(out),
                        Some(_) => self.value(),
                    }
                }
            }
            _ => self.value(),
        }
    }

    /// Walk the top-level object; the last `Statement` key wins, as in serde_json.
    fn top_level(&mut self, text: &str) -> Vec<usize> {
        let mut found = Vec::new();
        self.ws();
        if self.peek() != Some(b'{') {
            return found;
        }
        self.i += 1;
        loop {
            self.ws();
            match self.peek() {
                Some(b'"') => {}
                Some(b',') => {
                    self.i += 1;
                    continue;
                }
                _ => return found,
            }
            let (a, b) = self.string();
            let key = text.get(a..b).and_then(decode_key);
            self.ws();
            if self.peek() == Some(b':') {
                self.i += 1;
            }
            if key.as_deref() == Some("Statement") {
                found.clear();
                self.statements(&mut found);
            } else {
                self.value();
            }
        }
    }
}

/// A key with its quotes; escapes decoded only when present.
fn decode_key(raw: &str) -> Option<String> {
    if raw.contains('\\') {
        serde_json::from_str(raw).ok()
    } else {
        raw.get(1..raw.len().saturating_sub(1)).map(str::to_string)
    }
}

/// Turn ascending byte offsets (open, close, open, close, …) into spans in one pass.
fn to_spans(text: &str, offsets: &[usize]) -> Vec<Span> {
    let mut positions = Vec::with_capacity(offsets.len());
    let mut want = offsets.iter().copied().peekable();
    let (mut line, mut column) = (1u32, 1u32);
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        while want.peek() == Some(&at) {
            positions.push(Position { line, column });
            want.next();
        }
        if want.peek().is_none() {
            break;
        }
        match c {
            '\n' => (line, column) = (line + 1, 1),
            '\r' => {
                if chars.peek().map(|&(_, n)| n) != Some('\n') {
                    (line, column) = (line + 1, 1);
                }
            }
            _ => column += 1,
        }
    }
    positions
        .chunks_exact(2)
        .filter_map(|p| match p {
            [start, end] => Some(Span {
                start: *start,
                end: *end,
            }),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u32, column: u32) -> Position {
        Position { line, column }
    }

    #[test]
    fn one_line_statement_object() {
        // AWS's documented simulate-custom-policy example document.
        let doc = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"dynamodb:*","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2018-08-16T12:00:00Z"}}}}"#;
        assert_eq!(
            statement_spans(doc),
            vec![Span {
                start: at(1, 37),
                end: at(1, 166)
            }]
        );
    }

    #[test]
    fn statements_in_an_array_over_lines_with_crlf_and_tricky_strings() {
        let doc = "{\r\n  \"Statement\": [\r\n    {\"Sid\": \"A\", \"Effect\": \"Allow\", \"Action\": \"s3:*\", \"Resource\": \"arn:aws:s3:::b/{x}\\\"]\"},\r\n    {\r\n      \"Effect\": \"Deny\", \"Action\": \"s3:*\", \"Resource\": \"*\"\r\n    }\r\n  ],\r\n  \"Version\": \"2012-10-17\"\r\n}";
        let spans = statement_spans(doc);
        assert_eq!(
            spans,
            vec![
                Span {
                    start: at(3, 5),
                    end: at(3, 90)
                },
                Span {
                    start: at(4, 5),
                    end: at(6, 5)
                },
            ]
        );
    }

    #[test]
    fn the_last_statement_key_wins_and_other_keys_are_skipped() {
        let doc = r#"{"Id":{"Statement":[{"x":1}]},"Statement":[{"a":[1,{"b":"}"}]}],"Statement":{"c":"é"}}"#;
        assert_eq!(
            statement_spans(doc),
            vec![Span {
                start: at(1, 77),
                end: at(1, 85)
            }]
        );
    }

    #[test]
    fn evaluation_reports_where_the_matching_statement_is() {
        use crate::{Context, Policy, PolicyKind, PolicyRef, PolicySet, Principal, Request};
        let doc = "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [\n    {\"Effect\": \"Allow\", \"Action\": \"s3:Get*\", \"Resource\": \"*\"},\n    {\n      \"Effect\": \"Deny\",\n      \"Action\": \"s3:GetObject\",\n      \"Resource\": \"arn:aws:s3:::b/${aws:username}/*\",\n      \"Condition\": {\"StringEquals\": {\"s3:ExistingObjectTag/Env\": \"prod\"}}\n    }\n  ]\n}";
        let p = Policy::parse(doc, PolicyKind::Identity).unwrap();
        assert_eq!(
            p.span(0),
            Some(Span {
                start: at(4, 5),
                end: at(4, 61)
            })
        );
        assert_eq!(
            p.span(1),
            Some(Span {
                start: at(5, 5),
                end: at(10, 5)
            })
        );
        assert_eq!(
            p.context_keys(),
            ["aws:username", "s3:ExistingObjectTag/Env"]
        );
        let who = Principal::from_arn("arn:aws:iam::111111111111:user/ann").unwrap();
        let set = PolicySet {
            identity: vec![PolicyRef {
                id: "p",
                policy: &p,
            }],
            ..Default::default()
        };
        let ctx = Context::new();
        let req = Request {
            principal: &who,
            action: "s3:GetObject",
            resource: "arn:aws:s3:::b/ann/k",
            resource_account: None,
            context: &ctx,
        };
        let ev = crate::evaluate(&req, &set);
        assert!(ev.is_allowed());
        assert_eq!(ev.matched[0].span, p.span(0));
        // aws:username comes from the principal; the tag is missing.
        assert_eq!(
            crate::missing_context_keys(&req, &set),
            ["s3:ExistingObjectTag/Env"]
        );
        let mut tagged = Context::new();
        tagged.insert("s3:ExistingObjectTag/Env", "prod");
        let req = Request {
            context: &tagged,
            ..req
        };
        let ev = crate::evaluate(&req, &set);
        assert_eq!(ev.matched.len(), 1);
        assert_eq!(ev.matched[0].span, p.span(1));
        assert!(crate::missing_context_keys(&req, &set).is_empty());
    }

    #[test]
    fn garbage_yields_nothing_and_does_not_panic() {
        for doc in [
            "",
            "[",
            "{\"Statement\":",
            "{\"Statement\":[{",
            "\"x\"",
            "{\"a\\",
        ] {
            let _ = statement_spans(doc);
        }
        assert!(statement_spans("[]").is_empty());
    }
}
