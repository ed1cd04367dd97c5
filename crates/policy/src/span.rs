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

/// A JSON value with the byte range `[start, end)` of its text, for the linter:
/// every element, array item and object key can be pointed at.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) v: Val,
}

/// The value of a [`Node`]; objects keep their members in document order (duplicates too).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Val {
    Null,
    Bool(bool),
    /// The number as written.
    Num(String),
    Str(String),
    Arr(Vec<Node>),
    Obj(Vec<Member>),
}

/// One `"key": value` of an object.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Member {
    pub(crate) key: String,
    pub(crate) key_start: usize,
    pub(crate) key_end: usize,
    pub(crate) value: Node,
}

impl Node {
    /// The last member named `key` (serde_json's rule for duplicates).
    pub(crate) fn get(&self, key: &str) -> Option<&Member> {
        match &self.v {
            Val::Obj(ms) => ms.iter().rev().find(|m| m.key == key),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.v {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Deepest nesting the tree parser follows; policies are shallow, and a bound
/// keeps hostile input from exhausting the stack.
const MAX_DEPTH: usize = 64;

/// Parse JSON into a [`Node`] tree; on a syntax error, the byte offset where it is.
pub(crate) fn parse_tree(text: &str) -> Result<Node, usize> {
    let mut p = Scanner {
        b: text.as_bytes(),
        i: 0,
    };
    let node = p.node(text, 0)?;
    p.ws();
    if p.i < p.b.len() {
        return Err(p.i);
    }
    Ok(node)
}

impl Scanner<'_> {
    fn expect(&mut self, c: u8) -> Result<(), usize> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.i)
        }
    }

    fn node(&mut self, text: &str, depth: usize) -> Result<Node, usize> {
        self.ws();
        let start = self.i;
        if depth > MAX_DEPTH {
            return Err(start);
        }
        let v = match self.peek() {
            Some(b'{') => self.object(text, depth)?,
            Some(b'[') => self.array(text, depth)?,
            Some(b'"') => Val::Str(self.json_string(text)?),
            Some(b't') => self.word("true", Val::Bool(true))?,
            Some(b'f') => self.word("false", Val::Bool(false))?,
            Some(b'n') => self.word("null", Val::Null)?,
            Some(b'-' | b'0'..=b'9') => Val::Num(self.number(text)?),
            _ => return Err(start),
        };
        Ok(Node {
            start,
            end: self.i,
            v,
        })
    }

    fn word(&mut self, w: &str, v: Val) -> Result<Val, usize> {
        if self.b.get(self.i..self.i + w.len()) == Some(w.as_bytes()) {
            self.i += w.len();
            Ok(v)
        } else {
            Err(self.i)
        }
    }

    fn digits(&mut self) -> usize {
        let from = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - from
    }

    fn number(&mut self, text: &str) -> Result<String, usize> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        if self.digits() == 0 {
            return Err(self.i);
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.i);
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.i);
            }
        }
        Ok(text.get(start..self.i).unwrap_or_default().to_string())
    }

    /// A string token, decoded; serde_json does the unescaping.
    fn json_string(&mut self, text: &str) -> Result<String, usize> {
        let start = self.i;
        self.i += 1;
        loop {
            match self.peek() {
                None => return Err(self.i),
                Some(b'"') => break,
                Some(b'\\') => self.i += 2,
                Some(c) if c < 0x20 => return Err(self.i),
                Some(_) => self.i += 1,
            }
        }
        self.i += 1;
        let raw = text.get(start..self.i).ok_or(start)?;
        if raw.contains('\\') {
            serde_json::from_str(raw).map_err(|_| start)
        } else {
            Ok(raw.get(1..raw.len() - 1).unwrap_or_default().to_string())
        }
    }

    fn array(&mut self, text: &str, depth: usize) -> Result<Val, usize> {
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(Val::Arr(items));
        }
        loop {
            items.push(self.node(text, depth + 1)?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Val::Arr(items));
                }
                _ => return Err(self.i),
            }
        }
    }

    fn object(&mut self, text: &str, depth: usize) -> Result<Val, usize> {
        self.i += 1;
        let mut members = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Val::Obj(members));
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.i);
            }
            let key_start = self.i;
            let key = self.json_string(text)?;
            let key_end = self.i;
            self.expect(b':')?;
            let value = self.node(text, depth + 1)?;
            members.push(Member {
                key,
                key_start,
                key_end,
                value,
            });
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Val::Obj(members));
                }
                _ => return Err(self.i),
            }
        }
    }
}

/// A position as Access Analyzer reports it: 1-based line, 0-based column and
/// 0-based offset, both counted in characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TextPos {
    /// 1-based line.
    pub line: u32,
    /// 0-based column (characters from the start of the line).
    pub column: u32,
    /// 0-based character offset from the start of the document.
    pub offset: u32,
}

/// Line starts of a text, to turn byte offsets into [`TextPos`] without rescanning.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    /// (byte offset, character offset) of each line start.
    starts: Vec<(usize, usize)>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut starts = vec![(0, 0)];
        let mut chars = text.char_indices().enumerate().peekable();
        while let Some((n, (at, c))) = chars.next() {
            let ends = match c {
                '\n' => true,
                '\r' => chars.peek().map(|&(_, (_, n))| n) != Some('\n'),
                _ => false,
            };
            if ends {
                starts.push((at + 1, n + 1));
            }
        }
        LineIndex { text, starts }
    }

    /// The position of byte `at` (clamped to the text, and back to a char boundary).
    pub(crate) fn pos(&self, at: usize) -> TextPos {
        let mut at = at.min(self.text.len());
        while !self.text.is_char_boundary(at) {
            at -= 1;
        }
        let line = self.starts.partition_point(|&(b, _)| b <= at).max(1);
        let (lb, lc) = self.starts.get(line - 1).copied().unwrap_or((0, 0));
        let column = self.text.get(lb..at).map_or(0, |s| s.chars().count());
        let cap = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        TextPos {
            line: cap(line),
            column: cap(column),
            offset: cap(lc + column),
        }
    }
}

#[cfg(test)]
mod tree_tests {
    use super::*;

    #[test]
    fn tree_records_ranges_of_keys_values_and_items() {
        let doc = "{\"A\": [1, \"x\"],\n \"B\": {\"c\": null}}";
        let root = parse_tree(doc).unwrap();
        let a = root.get("A").unwrap();
        assert_eq!((a.key_start, a.key_end), (1, 4));
        assert_eq!(&doc[a.value.start..a.value.end], "[1, \"x\"]");
        let Val::Arr(items) = &a.value.v else {
            panic!()
        };
        assert_eq!(&doc[items[1].start..items[1].end], "\"x\"");
        let idx = LineIndex::new(doc);
        let b = root.get("B").unwrap();
        assert_eq!(
            idx.pos(b.key_start),
            TextPos {
                line: 2,
                column: 1,
                offset: 17
            }
        );
    }

    #[test]
    fn syntax_errors_point_at_the_offending_byte() {
        assert_eq!(parse_tree("{\"a\": }"), Err(6));
        assert_eq!(parse_tree("[1,]"), Err(3));
        assert_eq!(parse_tree("{} x"), Err(3));
        assert_eq!(parse_tree(""), Err(0));
        assert_eq!(parse_tree("\"\\q\""), Err(0));
        assert!(parse_tree(&"[".repeat(10_000)).is_err());
    }

    #[test]
    fn positions_count_characters_and_every_line_ending() {
        let doc = "é\r\nx\ry\nz";
        let idx = LineIndex::new(doc);
        let z = doc.find('z').unwrap();
        assert_eq!(
            idx.pos(z),
            TextPos {
                line: 4,
                column: 0,
                offset: 7
            }
        );
        assert_eq!(idx.pos(1).offset, 0);
        assert_eq!(idx.pos(999).line, 4);
    }
}
