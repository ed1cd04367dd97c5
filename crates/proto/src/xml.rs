//! XML for AWS responses (writer and renderers) and a small, safe reader for
//! S3 request bodies.

use std::fmt::Write as _;

use crate::query::QueryError;

/// The XML declaration every response starts with.
pub const XML_DECL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;
/// IAM's namespace.
pub const IAM_XMLNS: &str = "https://iam.amazonaws.com/doc/2010-05-08/";
/// STS's namespace.
pub const STS_XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// EC2's namespace.
pub const EC2_XMLNS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";
/// S3's namespace.
pub const S3_XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// Append `text` escaped for element content or a double-quoted attribute.
///
/// `& < > " '` become entities, `\r` becomes `&#13;` (so it survives line-end
/// normalisation) and other C0 controls become `&#xN;` as S3 does.
pub fn escape_into(out: &mut String, text: &str) {
    let bytes = text.as_bytes();
    let mut last = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let rep: &str = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&apos;",
            b'\r' => "&#13;",
            b'\t' | b'\n' => continue,
            0..=0x1f | 0x7f => "",
            _ => continue,
        };
        out.push_str(&text[last..i]);
        if rep.is_empty() {
            let _ = write!(out, "&#x{b:X};");
        } else {
            out.push_str(rep);
        }
        last = i + 1;
    }
    out.push_str(&text[last..]);
}

/// `text` escaped (see [`escape_into`]).
pub fn escape(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 8);
    escape_into(&mut s, text);
    s
}

/// A minimal streaming XML writer. Tags are trusted (they come from code);
/// text and attribute values are escaped.
#[derive(Debug, Clone, Default)]
pub struct XmlWriter {
    buf: String,
}

impl XmlWriter {
    /// A document, starting with the XML declaration.
    pub fn new() -> Self {
        let mut buf = String::with_capacity(1024);
        buf.push_str(XML_DECL);
        Self { buf }
    }

    /// A fragment: no XML declaration.
    pub fn fragment() -> Self {
        Self {
            buf: String::with_capacity(256),
        }
    }

    /// `<tag>`.
    pub fn start(&mut self, tag: &str) -> &mut Self {
        self.buf.push('<');
        self.buf.push_str(tag);
        self.buf.push('>');
        self
    }

    /// `<tag xmlns="xmlns">`.
    pub fn start_ns(&mut self, tag: &str, xmlns: &str) -> &mut Self {
        self.start_attrs(tag, &[("xmlns", xmlns)])
    }

    /// `<tag a="v" …>` (values escaped).
    pub fn start_attrs(&mut self, tag: &str, attrs: &[(&str, &str)]) -> &mut Self {
        self.buf.push('<');
        self.buf.push_str(tag);
        for (k, v) in attrs {
            self.buf.push(' ');
            self.buf.push_str(k);
            self.buf.push_str("=\"");
            escape_into(&mut self.buf, v);
            self.buf.push('"');
        }
        self.buf.push('>');
        self
    }

    /// `</tag>`.
    pub fn end(&mut self, tag: &str) -> &mut Self {
        self.buf.push_str("</");
        self.buf.push_str(tag);
        self.buf.push('>');
        self
    }

    /// `<tag>text</tag>` (text escaped).
    pub fn elem(&mut self, tag: &str, text: &str) -> &mut Self {
        self.start(tag);
        escape_into(&mut self.buf, text);
        self.end(tag)
    }

    /// `<tag>value</tag>` for numbers, booleans and other `Display` values (escaped).
    pub fn elem_display(&mut self, tag: &str, value: impl std::fmt::Display) -> &mut Self {
        self.start(tag);
        let start = self.buf.len();
        let _ = write!(self.buf, "{value}");
        if self.buf[start..]
            .bytes()
            .any(|b| matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'') || b < 0x20)
        {
            let raw = self.buf.split_off(start);
            escape_into(&mut self.buf, &raw);
        }
        self.end(tag)
    }

    /// `<tag>text</tag>` if `Some`, nothing if `None`.
    pub fn opt_elem(&mut self, tag: &str, text: Option<&str>) -> &mut Self {
        if let Some(t) = text {
            self.elem(tag, t);
        }
        self
    }

    /// `<tag/>`.
    pub fn empty(&mut self, tag: &str) -> &mut Self {
        self.buf.push('<');
        self.buf.push_str(tag);
        self.buf.push_str("/>");
        self
    }

    /// Escaped text content.
    pub fn text(&mut self, text: &str) -> &mut Self {
        escape_into(&mut self.buf, text);
        self
    }

    /// Append pre-rendered XML verbatim (trusted).
    pub fn raw(&mut self, xml: &str) -> &mut Self {
        self.buf.push_str(xml);
        self
    }

    /// `<tag>…</tag>` around whatever `f` writes.
    pub fn wrap(&mut self, tag: &str, f: impl FnOnce(&mut XmlWriter)) -> &mut Self {
        self.start(tag);
        f(self);
        self.end(tag)
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The document.
    pub fn finish(self) -> String {
        self.buf
    }
}

/// A query-protocol (IAM/STS) response:
/// `<{Action}Response xmlns><{Action}Result>…</{Action}Result><ResponseMetadata><RequestId/></ResponseMetadata></{Action}Response>`.
/// When `result` writes nothing, the `Result` element is left out (e.g. `DeleteUser`).
pub fn query_response(
    action: &str,
    xmlns: &str,
    request_id: &str,
    result: impl FnOnce(&mut XmlWriter),
) -> String {
    let mut w = XmlWriter::new();
    let response = format!("{action}Response");
    let result_tag = format!("{action}Result");
    w.start_ns(&response, xmlns);
    let before = w.len();
    w.start(&result_tag);
    let inner = w.len();
    result(&mut w);
    if w.len() == inner {
        w.buf.truncate(before);
    } else {
        w.end(&result_tag);
    }
    w.start("ResponseMetadata")
        .elem("RequestId", request_id)
        .end("ResponseMetadata")
        .end(&response);
    w.finish()
}

/// A query-protocol response whose model output is an empty structure
/// (IAM `UpdateRole`): the `Result` element is there, empty, because
/// botocore looks for it.
pub fn query_empty_result(action: &str, xmlns: &str, request_id: &str) -> String {
    let mut w = XmlWriter::new();
    let response = format!("{action}Response");
    w.start_ns(&response, xmlns);
    w.buf.push_str(&format!("<{action}Result/>"));
    w.start("ResponseMetadata")
        .elem("RequestId", request_id)
        .end("ResponseMetadata")
        .end(&response);
    w.finish()
}

/// A query-protocol error:
/// `<ErrorResponse xmlns><Error><Type/><Code/><Message/></Error><RequestId/></ErrorResponse>`.
pub fn query_error(
    xmlns: &str,
    error_type: &str,
    code: &str,
    message: &str,
    request_id: &str,
) -> String {
    let mut w = XmlWriter::new();
    w.start_ns("ErrorResponse", xmlns)
        .start("Error")
        .elem("Type", error_type)
        .elem("Code", code)
        .elem("Message", message)
        .end("Error")
        .elem("RequestId", request_id)
        .end("ErrorResponse");
    w.finish()
}

/// An EC2 response: `<{Action}Response xmlns="…2016-11-15/"><requestId/>…</{Action}Response>`.
pub fn ec2_response(action: &str, request_id: &str, body: impl FnOnce(&mut XmlWriter)) -> String {
    let mut w = XmlWriter::new();
    let response = format!("{action}Response");
    w.start_ns(&response, EC2_XMLNS)
        .elem("requestId", request_id);
    body(&mut w);
    w.end(&response);
    w.finish()
}

/// An EC2 error: `<Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>`.
pub fn ec2_error(code: &str, message: &str, request_id: &str) -> String {
    let mut w = XmlWriter::new();
    w.start("Response")
        .start("Errors")
        .start("Error")
        .elem("Code", code)
        .elem("Message", message)
        .end("Error")
        .end("Errors")
        .elem("RequestID", request_id)
        .end("Response");
    w.finish()
}

/// An S3 error: `<Error><Code/><Message/><Resource/><RequestId/></Error>`.
pub fn s3_error(code: &str, message: &str, resource: Option<&str>, request_id: &str) -> String {
    let mut w = XmlWriter::new();
    w.start("Error")
        .elem("Code", code)
        .elem("Message", message)
        .opt_elem("Resource", resource)
        .elem("RequestId", request_id)
        .end("Error");
    w.finish()
}

// ---------------------------------------------------------------------------
// Reader

/// Largest document [`parse_xml`] accepts.
pub const MAX_XML_BYTES: usize = 4 << 20;
/// Deepest nesting [`parse_xml`] accepts.
pub const MAX_XML_DEPTH: usize = 32;
/// Most elements [`parse_xml`] accepts.
pub const MAX_XML_NODES: usize = 100_000;
/// Most attributes on one element. S3 bodies carry at most a few (`xmlns`,
/// `xmlns:xsi`, `xsi:type`); the cap also keeps the duplicate-attribute check
/// constant per attribute, so parsing stays linear in the input.
pub const MAX_XML_ATTRS: usize = 16;

/// An element: name as written (with any prefix), attributes, direct text, children.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct XmlNode {
    /// Element name as written, e.g. `Delete` or `s3:Delete`.
    pub name: String,
    /// Attributes in document order (`xmlns` included).
    pub attrs: Vec<(String, String)>,
    /// Concatenated character data directly inside this element (entities resolved, CDATA included).
    pub text: String,
    /// Child elements in document order.
    pub children: Vec<XmlNode>,
}

impl XmlNode {
    /// The name without a namespace prefix.
    pub fn local_name(&self) -> &str {
        self.name.rsplit(':').next().unwrap_or(&self.name)
    }

    /// First child with local name `name`.
    pub fn child(&self, name: &str) -> Option<&XmlNode> {
        self.children.iter().find(|c| c.local_name() == name)
    }

    /// All children with local name `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a XmlNode> + 'a {
        self.children.iter().filter(move |c| c.local_name() == name)
    }

    /// Text of the first child named `name`.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    /// An attribute's value.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn malformed_xml() -> QueryError {
    QueryError::new(
        "MalformedXML",
        "The XML you provided was not well-formed or did not validate against our published schema",
    )
}

struct Reader<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    fn starts_with(&self, p: &str) -> bool {
        self.rest().starts_with(p)
    }

    fn skip_ws(&mut self) {
        let r = self.rest();
        self.pos += r.len() - r.trim_start_matches([' ', '\t', '\r', '\n']).len();
    }

    /// Skip past the next `end`, returning what was before it.
    fn until(&mut self, end: &str) -> Result<&'a str, QueryError> {
        let r = self.rest();
        let i = r.find(end).ok_or_else(malformed_xml)?;
        self.pos += i + end.len();
        Ok(&r[..i])
    }

    fn name(&mut self) -> Result<&'a str, QueryError> {
        let r = self.rest();
        let len = r
            .find(|c: char| c.is_whitespace() || matches!(c, '>' | '/' | '=' | '<' | '"' | '\''))
            .unwrap_or(r.len());
        let n = &r[..len];
        let valid_start = n
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_' || c == ':');
        if !valid_start || n.contains(['&', ';', '?', '!']) {
            return Err(malformed_xml());
        }
        self.pos += len;
        Ok(n)
    }
}

/// Resolve entity and character references in `raw` into `out`.
/// Only the five predefined entities and numeric references are allowed.
fn unescape_into(out: &mut String, raw: &str) -> Result<(), QueryError> {
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after
            .find(';')
            .filter(|&e| e <= 10)
            .ok_or_else(malformed_xml)?;
        let ent = &after[..end];
        let c = match ent {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(h) = ent.strip_prefix("#x") {
                    u32::from_str_radix(h, 16).ok()
                } else if let Some(d) = ent.strip_prefix('#') {
                    d.parse::<u32>().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .filter(|&c| c != '\0')
                    .ok_or_else(malformed_xml)?
            }
        };
        out.push(c);
        rest = &after[end + 1..];
    }
    if rest.contains('<') {
        return Err(malformed_xml());
    }
    out.push_str(rest);
    Ok(())
}

/// Parse a small XML document (S3 request bodies: `CompleteMultipartUpload`,
/// `CreateBucketConfiguration`, `Delete`, tagging, …) into its root element.
///
/// Rejects DOCTYPE / entity declarations, unknown entities, mismatched tags,
/// invalid UTF-8, more than [`MAX_XML_BYTES`], deeper than [`MAX_XML_DEPTH`],
/// more than [`MAX_XML_NODES`] elements or more than [`MAX_XML_ATTRS`]
/// attributes on one element — all as `MalformedXML`. Every step consumes what it
/// scans, so the cost is linear in the input.
/// Comments and processing instructions are skipped.
pub fn parse_xml(body: &[u8]) -> Result<XmlNode, QueryError> {
    if body.len() > MAX_XML_BYTES {
        return Err(malformed_xml());
    }
    let s = std::str::from_utf8(body).map_err(|_| malformed_xml())?;
    let s = s.strip_prefix('\u{feff}').unwrap_or(s);
    let mut r = Reader { s, pos: 0 };
    let mut stack: Vec<XmlNode> = Vec::new();
    let mut root: Option<XmlNode> = None;
    let mut nodes = 0usize;

    loop {
        if stack.is_empty() {
            r.skip_ws();
            if r.rest().is_empty() {
                break;
            }
            if !r.starts_with("<") {
                return Err(malformed_xml());
            }
        }
        if r.rest().is_empty() {
            return Err(malformed_xml());
        }
        if r.starts_with("<?") {
            r.pos += 2;
            r.until("?>")?;
        } else if r.starts_with("<!--") {
            r.pos += 4;
            let c = r.until("-->")?;
            if c.contains("--") {
                return Err(malformed_xml());
            }
        } else if r.starts_with("<![CDATA[") {
            r.pos += 9;
            let data = r.until("]]>")?;
            match stack.last_mut() {
                Some(top) => top.text.push_str(data),
                None => return Err(malformed_xml()),
            }
        } else if r.starts_with("<!") {
            // DOCTYPE, ENTITY, …: never.
            return Err(malformed_xml());
        } else if r.starts_with("</") {
            r.pos += 2;
            let name = r.name()?;
            r.skip_ws();
            if !r.starts_with(">") {
                return Err(malformed_xml());
            }
            r.pos += 1;
            let node = stack.pop().ok_or_else(malformed_xml)?;
            if node.name != name {
                return Err(malformed_xml());
            }
            match stack.last_mut() {
                Some(parent) => parent.children.push(node),
                None => {
                    if root.is_some() {
                        return Err(malformed_xml());
                    }
                    root = Some(node);
                }
            }
        } else if r.starts_with("<") {
            r.pos += 1;
            if stack.is_empty() && root.is_some() {
                return Err(malformed_xml());
            }
            nodes += 1;
            if nodes > MAX_XML_NODES || stack.len() >= MAX_XML_DEPTH {
                return Err(malformed_xml());
            }
            let name = r.name()?;
            let mut node = XmlNode {
                name: name.to_owned(),
                ..XmlNode::default()
            };
            let self_closing = loop {
                let before = r.pos;
                r.skip_ws();
                if r.starts_with("/>") {
                    r.pos += 2;
                    break true;
                }
                if r.starts_with(">") {
                    r.pos += 1;
                    break false;
                }
                if r.pos == before {
                    // Attributes must be separated by whitespace.
                    return Err(malformed_xml());
                }
                let an = r.name()?;
                r.skip_ws();
                if !r.starts_with("=") {
                    return Err(malformed_xml());
                }
                r.pos += 1;
                r.skip_ws();
                let quote = if r.starts_with("\"") {
                    "\""
                } else if r.starts_with("'") {
                    "'"
                } else {
                    return Err(malformed_xml());
                };
                r.pos += 1;
                let raw = r.until(quote)?;
                let mut v = String::with_capacity(raw.len());
                unescape_into(&mut v, raw)?;
                if node.attrs.len() >= MAX_XML_ATTRS || node.attrs.iter().any(|(k, _)| k == an) {
                    return Err(malformed_xml());
                }
                node.attrs.push((an.to_owned(), v));
            };
            if self_closing {
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            } else {
                stack.push(node);
            }
        } else {
            // Character data up to the next markup.
            let rest = r.rest();
            let len = rest.find('<').unwrap_or(rest.len());
            let raw = &rest[..len];
            r.pos += len;
            match stack.last_mut() {
                Some(top) => unescape_into(&mut top.text, raw)?,
                None => return Err(malformed_xml()),
            }
        }
    }
    if !stack.is_empty() {
        return Err(malformed_xml());
    }
    root.ok_or_else(malformed_xml)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(escape(r#"a&b<c>d"e'f"#), "a&amp;b&lt;c&gt;d&quot;e&apos;f");
        assert_eq!(escape("x\ry\nz\tq\u{1}"), "x&#13;y\nz\tq&#x1;");
        assert_eq!(escape("ünï"), "ünï");
    }

    #[test]
    fn writer() {
        let mut w = XmlWriter::new();
        w.start_ns("A", "urn:x")
            .elem("B", "1<2")
            .opt_elem("C", None)
            .opt_elem("D", Some("d"))
            .elem_display("N", 42)
            .empty("E")
            .raw("<R/>")
            .end("A");
        assert_eq!(
            w.finish(),
            r#"<?xml version="1.0" encoding="UTF-8"?><A xmlns="urn:x"><B>1&lt;2</B><D>d</D><N>42</N><E/><R/></A>"#
        );
    }

    #[test]
    fn query_renderers() {
        let r = query_response("GetUser", IAM_XMLNS, "req-1", |w| {
            w.start("User").elem("UserName", "bob").end("User");
        });
        assert_eq!(
            r,
            r#"<?xml version="1.0" encoding="UTF-8"?><GetUserResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><GetUserResult><User><UserName>bob</UserName></User></GetUserResult><ResponseMetadata><RequestId>req-1</RequestId></ResponseMetadata></GetUserResponse>"#
        );
        let r = query_response("DeleteUser", IAM_XMLNS, "req-2", |_| {});
        assert_eq!(
            r,
            r#"<?xml version="1.0" encoding="UTF-8"?><DeleteUserResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><ResponseMetadata><RequestId>req-2</RequestId></ResponseMetadata></DeleteUserResponse>"#
        );
        let e = query_error(STS_XMLNS, "Sender", "AccessDenied", "no & no", "r");
        assert_eq!(
            e,
            r#"<?xml version="1.0" encoding="UTF-8"?><ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>no &amp; no</Message></Error><RequestId>r</RequestId></ErrorResponse>"#
        );
    }

    #[test]
    fn ec2_and_s3_renderers() {
        let r = ec2_response("DescribeInstances", "rid", |w| {
            w.empty("reservationSet");
        });
        assert_eq!(
            r,
            r#"<?xml version="1.0" encoding="UTF-8"?><DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>rid</requestId><reservationSet/></DescribeInstancesResponse>"#
        );
        assert_eq!(
            ec2_error(
                "UnauthorizedOperation",
                "You are not authorized to perform this operation.",
                "rid"
            ),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>rid</RequestID></Response>"#
        );
        assert_eq!(
            s3_error(
                "NoSuchKey",
                "The specified key does not exist.",
                Some("/b/k"),
                "rid"
            ),
            r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><Resource>/b/k</Resource><RequestId>rid</RequestId></Error>"#
        );
        assert_eq!(
            s3_error("AccessDenied", "Access Denied", None, "rid"),
            r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>rid</RequestId></Error>"#
        );
    }

    #[test]
    fn reader_s3_bodies() {
        let doc = br#"<?xml version="1.0" encoding="UTF-8"?>
<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <!-- a comment -->
  <Part><PartNumber>1</PartNumber><ETag>"a54357aff0632cce46d942af68356b38"</ETag></Part>
  <Part><PartNumber>2</PartNumber><ETag>&quot;0c78aef83f66abc1fa1e8477f296d394&quot;</ETag></Part>
</CompleteMultipartUpload>"#;
        let n = parse_xml(doc).expect("parse");
        assert_eq!(n.name, "CompleteMultipartUpload");
        assert_eq!(n.attr("xmlns"), Some(S3_XMLNS));
        let parts: Vec<_> = n.children_named("Part").collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].child_text("PartNumber"), Some("1"));
        assert_eq!(
            parts[1].child_text("ETag"),
            Some("\"0c78aef83f66abc1fa1e8477f296d394\"")
        );

        let d = parse_xml(b"<Delete><Quiet>true</Quiet><Object><Key>a&amp;b &#x263A; &#65;<![CDATA[<x>]]></Key></Object><Object><Key/></Object></Delete>")
            .expect("parse");
        let objs: Vec<_> = d.children_named("Object").collect();
        assert_eq!(objs[0].child_text("Key"), Some("a&b ☺ A<x>"));
        assert_eq!(objs[1].child_text("Key"), Some(""));
        let c = parse_xml(b"<s3:CreateBucketConfiguration xmlns:s3='urn:x'><s3:LocationConstraint>eu-west-1</s3:LocationConstraint></s3:CreateBucketConfiguration>").expect("ns");
        assert_eq!(c.local_name(), "CreateBucketConfiguration");
        assert_eq!(c.child_text("LocationConstraint"), Some("eu-west-1"));
    }

    #[test]
    fn reader_rejects() {
        let deep = "<a>".repeat(MAX_XML_DEPTH + 1) + &"</a>".repeat(MAX_XML_DEPTH + 1);
        for bad in [
            &b""[..],
            b"text",
            b"<a>",
            b"<a></b>",
            b"<a></a><b></b>",
            b"<a>&foo;</a>",
            b"<a>&amp</a>",
            b"<a>&#0;</a>",
            b"<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>",
            b"<a x=1></a>",
            b"<a x='1'y='2'></a>",
            b"<a x='1' x='2'></a>",
            b"<a>\xff</a>",
            b"</a>",
            b"<a><!-- -- --></a>",
            b"<>x</>",
            b"<a>x</a>trailing",
            deep.as_bytes(),
        ] {
            assert_eq!(
                parse_xml(bad).map_err(|e| e.code),
                Err("MalformedXML"),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let ok = "<a>".repeat(MAX_XML_DEPTH) + &"</a>".repeat(MAX_XML_DEPTH);
        assert!(parse_xml(ok.as_bytes()).is_ok());
    }

    #[test]
    fn attribute_limit() {
        let attrs = |n: usize| (0..n).map(|i| format!(" a{i}='v'")).collect::<String>();
        let ok = format!("<a{}/>", attrs(MAX_XML_ATTRS));
        assert_eq!(
            parse_xml(ok.as_bytes()).map(|n| n.attrs.len()),
            Ok(MAX_XML_ATTRS)
        );
        let over = format!("<a{}/>", attrs(MAX_XML_ATTRS + 1));
        assert_eq!(
            parse_xml(over.as_bytes()).map_err(|e| e.code),
            Err("MalformedXML")
        );
        // A 1 MB element of attributes is refused, not checked pairwise.
        let huge = format!("<a{}/>", attrs(100_000));
        assert_eq!(
            parse_xml(huge.as_bytes()).map_err(|e| e.code),
            Err("MalformedXML")
        );
    }

    #[test]
    fn round_trip_escaping() {
        let s = "k&<>\"' \u{263A}\r\n\t";
        let mut w = XmlWriter::fragment();
        w.elem("K", s);
        let n = parse_xml(w.finish().as_bytes()).expect("parse");
        assert_eq!(n.text, s);
    }
}
