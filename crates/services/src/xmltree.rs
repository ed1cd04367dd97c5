//! An XML reader that keeps what exclusive canonicalization needs and
//! nothing else may change: element and attribute names as written
//! (prefixes included), namespace declarations, text, comments and
//! processing instructions, in order. It refuses DTDs (no entity can be
//! declared, so none can expand or reach outside), knows only the five
//! predefined entities and character references, and bounds depth and
//! size. Used for SAML responses and metadata.

use std::collections::BTreeMap;
use std::sync::Arc;

/// The XML namespace, bound to `xml` everywhere.
pub const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";
const MAX_DEPTH: usize = 64;
const MAX_NODES: usize = 20_000;

/// Prefix (`""` for the default namespace) → namespace name.
pub type NsMap = Arc<BTreeMap<String, String>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// As written, `prefix:local` or `local`.
    pub name: String,
    /// Normalized and unescaped.
    pub value: String,
}

#[derive(Debug, Clone)]
pub enum Node {
    Elem(Element),
    Text(String),
    Comment(String),
    /// Target and data.
    Pi(String, String),
}

#[derive(Debug, Clone)]
pub struct Element {
    /// As written, `prefix:local` or `local`.
    pub name: String,
    /// Attributes other than namespace declarations, in document order.
    pub attrs: Vec<Attr>,
    /// The namespaces in scope here (declarations of this element and
    /// its ancestors).
    pub ns: NsMap,
    pub children: Vec<Node>,
}

/// Why a document was refused (for logs; callers answer one error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError(pub String);

type Res<T> = Result<T, XmlError>;

fn err<T>(m: &str) -> Res<T> {
    Err(XmlError(m.to_string()))
}

/// Split a qualified name into (prefix, local); no prefix gives `""`.
pub fn split_name(name: &str) -> (&str, &str) {
    name.split_once(':').unwrap_or(("", name))
}

impl Element {
    /// The namespace name of a prefix in scope (`""`: the default).
    pub fn ns_of(&self, prefix: &str) -> Option<&str> {
        if prefix == "xml" {
            return Some(XML_NS);
        }
        self.ns
            .get(prefix)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// (namespace name, local name) of the element.
    pub fn expanded(&self) -> (&str, &str) {
        let (p, local) = split_name(&self.name);
        (self.ns_of(p).unwrap_or(""), local)
    }

    pub fn is(&self, ns: &str, local: &str) -> bool {
        self.expanded() == (ns, local)
    }

    /// An unprefixed attribute's value.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.value.as_str())
    }

    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Elem(e) => Some(e),
            _ => None,
        })
    }

    /// Child elements with this expanded name.
    pub fn children_named<'a, 'b>(
        &'a self,
        ns: &'b str,
        local: &'b str,
    ) -> impl Iterator<Item = &'a Element> + use<'a, 'b> {
        self.elements().filter(move |e| e.is(ns, local))
    }

    /// The one child with this name; none or several is `None`.
    pub fn only_child(&self, ns: &str, local: &str) -> Option<&Element> {
        let mut it = self.children_named(ns, local);
        let first = it.next()?;
        it.next().is_none().then_some(first)
    }

    /// Every descendant (document order, self included).
    pub fn descendants(&self) -> Vec<&Element> {
        let mut out = vec![self];
        for c in self.elements() {
            out.extend(c.descendants());
        }
        out
    }

    /// The text content (text children only, concatenated).
    pub fn text(&self) -> String {
        self.children
            .iter()
            .filter_map(|n| match n {
                Node::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
    nodes: usize,
}

/// Parse a whole document; returns its root element.
pub fn parse(doc: &str) -> Res<Element> {
    // XML 1.0 §2.11: line ends become #xA before anything else.
    let doc = doc.replace("\r\n", "\n").replace('\r', "\n");
    let doc = doc.strip_prefix('\u{feff}').unwrap_or(&doc);
    let mut p = Parser {
        s: doc,
        i: 0,
        nodes: 0,
    };
    if p.rest().starts_with("<?xml") {
        p.pi()?;
    }
    p.misc()?;
    if !p.rest().starts_with('<') {
        return err("no root element");
    }
    let root = p.element(&Arc::new(BTreeMap::new()), 0)?;
    p.misc()?;
    if p.i != p.s.len() {
        return err("content after the root element");
    }
    Ok(root)
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn name_char(c: char) -> bool {
    !is_space(c) && !matches!(c, '<' | '>' | '/' | '=' | '"' | '\'' | '&' | '?' | '!')
}

fn valid_name(n: &str) -> bool {
    let mut parts = n.split(':');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| {
            p.chars()
                .next()
                .is_some_and(|c| !c.is_ascii_digit() && c != '-' && c != '.')
        })
    };
    match (parts.next(), parts.next(), parts.next()) {
        (a, None, None) => ok(a),
        (a, b @ Some(_), None) => ok(a) && ok(b),
        _ => false,
    }
}

fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{fffe}' && c != '\u{ffff}')
}

/// Replace entity and character references.
fn unescape(raw: &str) -> Res<String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('&') {
        out.push_str(rest.get(..at).unwrap_or(""));
        let after = rest.get(at + 1..).unwrap_or("");
        let Some(end) = after.find(';') else {
            return err("unterminated reference");
        };
        let name = after.get(..end).unwrap_or("");
        let c = match name {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(h) = name.strip_prefix("#x") {
                    u32::from_str_radix(h, 16).ok()
                } else if let Some(d) = name.strip_prefix('#') {
                    d.parse::<u32>().ok()
                } else {
                    return err("undeclared entity");
                };
                match code.and_then(char::from_u32).filter(|c| xml_char(*c)) {
                    Some(c) => c,
                    None => return err("bad character reference"),
                }
            }
        };
        out.push(c);
        rest = after.get(end + 1..).unwrap_or("");
    }
    out.push_str(rest);
    if out.chars().all(xml_char) {
        Ok(out)
    } else {
        err("character not allowed in XML")
    }
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        self.s.get(self.i..).unwrap_or("")
    }

    fn skip_space(&mut self) -> bool {
        let r = self.rest();
        let t = r.trim_start_matches(is_space);
        self.i += r.len() - t.len();
        r.len() != t.len()
    }

    fn eat(&mut self, lit: &str) -> Res<()> {
        if self.rest().starts_with(lit) {
            self.i += lit.len();
            Ok(())
        } else {
            err("unexpected character")
        }
    }

    /// Everything up to `end`, which is consumed.
    fn until(&mut self, end: &str) -> Res<&'a str> {
        let r = self.rest();
        let Some(at) = r.find(end) else {
            return err("unterminated construct");
        };
        self.i += at + end.len();
        Ok(r.get(..at).unwrap_or(""))
    }

    fn name(&mut self) -> Res<String> {
        let r = self.rest();
        let n = r.find(|c| !name_char(c)).unwrap_or(r.len());
        let name = r.get(..n).unwrap_or("");
        if !valid_name(name) {
            return err("bad name");
        }
        self.i += n;
        Ok(name.to_string())
    }

    fn count(&mut self) -> Res<()> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return err("too many nodes");
        }
        Ok(())
    }

    /// Comments, processing instructions and space outside the root.
    fn misc(&mut self) -> Res<()> {
        loop {
            self.skip_space();
            let r = self.rest();
            if r.starts_with("<!--") {
                self.comment()?;
            } else if r.starts_with("<!") {
                // DOCTYPE (or anything else with `<!`) is refused.
                return err("DTDs are not accepted");
            } else if r.starts_with("<?") {
                self.pi()?;
            } else {
                return Ok(());
            }
        }
    }

    fn comment(&mut self) -> Res<String> {
        self.eat("<!--")?;
        let c = self.until("-->")?;
        if c.contains("--") || !c.chars().all(xml_char) {
            return err("bad comment");
        }
        self.count()?;
        Ok(c.to_string())
    }

    fn pi(&mut self) -> Res<(String, String)> {
        self.eat("<?")?;
        let target = self.name()?;
        let body = self.until("?>")?;
        if !body.is_empty() && !body.starts_with(is_space) {
            return err("bad processing instruction");
        }
        self.count()?;
        Ok((target, body.trim_start_matches(is_space).to_string()))
    }

    fn attribute(&mut self) -> Res<Attr> {
        let name = self.name()?;
        self.skip_space();
        self.eat("=")?;
        self.skip_space();
        let q = match self.rest().chars().next() {
            Some(c @ ('"' | '\'')) => c,
            _ => return err("attribute value not quoted"),
        };
        self.i += 1;
        let raw = self.until(if q == '"' { "\"" } else { "'" })?;
        if raw.contains('<') {
            return err("'<' in attribute value");
        }
        // §3.3.3: literal white space becomes a space; references keep theirs.
        let raw = raw.replace(['\t', '\n', '\r'], " ");
        Ok(Attr {
            name,
            value: unescape(&raw)?,
        })
    }

    fn element(&mut self, parent: &NsMap, depth: usize) -> Res<Element> {
        if depth > MAX_DEPTH {
            return err("too deep");
        }
        self.count()?;
        self.eat("<")?;
        let name = self.name()?;
        let mut raw_attrs = Vec::new();
        let empty = loop {
            let spaced = self.skip_space();
            let r = self.rest();
            if r.starts_with("/>") {
                self.i += 2;
                break true;
            }
            if r.starts_with('>') {
                self.i += 1;
                break false;
            }
            if !spaced {
                return err("attributes must be separated by white space");
            }
            let a = self.attribute()?;
            if raw_attrs.iter().any(|b: &Attr| b.name == a.name) {
                return err("duplicate attribute");
            }
            raw_attrs.push(a);
        };
        let (ns, attrs) = scope(parent, raw_attrs)?;
        let mut e = Element {
            name,
            attrs,
            ns,
            children: Vec::new(),
        };
        check_bound(&e)?;
        if !empty {
            self.content(&mut e, depth)?;
        }
        Ok(e)
    }

    fn content(&mut self, e: &mut Element, depth: usize) -> Res<()> {
        let mut text = String::new();
        loop {
            let r = self.rest();
            if r.is_empty() {
                return err("unclosed element");
            }
            let node = if r.starts_with("</") {
                self.i += 2;
                let end = self.name()?;
                self.skip_space();
                self.eat(">")?;
                if end != e.name {
                    return err("mismatched end tag");
                }
                flush(&mut text, &mut e.children);
                return Ok(());
            } else if r.starts_with("<!--") {
                Node::Comment(self.comment()?)
            } else if r.starts_with("<![CDATA[") {
                self.i += 9;
                let c = self.until("]]>")?;
                if !c.chars().all(xml_char) {
                    return err("character not allowed in XML");
                }
                text.push_str(c);
                continue;
            } else if r.starts_with("<!") {
                return err("markup declarations are not accepted");
            } else if r.starts_with("<?") {
                let (t, d) = self.pi()?;
                Node::Pi(t, d)
            } else if r.starts_with('<') {
                Node::Elem(self.element(&e.ns, depth + 1)?)
            } else {
                let n = r.find('<').unwrap_or(r.len());
                let raw = r.get(..n).unwrap_or("");
                if raw.contains("]]>") {
                    return err("']]>' in text");
                }
                text.push_str(&unescape(raw)?);
                self.i += n;
                continue;
            };
            flush(&mut text, &mut e.children);
            e.children.push(node);
        }
    }
}

fn flush(text: &mut String, children: &mut Vec<Node>) {
    if !text.is_empty() {
        children.push(Node::Text(std::mem::take(text)));
    }
}

/// Split namespace declarations from attributes and extend the scope.
fn scope(parent: &NsMap, raw: Vec<Attr>) -> Res<(NsMap, Vec<Attr>)> {
    let mut decls = Vec::new();
    let mut attrs = Vec::new();
    for a in raw {
        if a.name == "xmlns" {
            decls.push((String::new(), a.value));
        } else if let Some(p) = a.name.strip_prefix("xmlns:") {
            if a.value.is_empty() || p == "xmlns" || (p == "xml") != (a.value == XML_NS) {
                return err("bad namespace declaration");
            }
            decls.push((p.to_string(), a.value));
        } else {
            attrs.push(a);
        }
    }
    if decls.is_empty() {
        return Ok((parent.clone(), attrs));
    }
    let mut m = (**parent).clone();
    for (p, v) in decls {
        if p != "xml" {
            m.insert(p, v);
        }
    }
    Ok((Arc::new(m), attrs))
}

/// Every prefix used is declared; no two attributes share an expanded name.
fn check_bound(e: &Element) -> Res<()> {
    let (p, _) = split_name(&e.name);
    if !p.is_empty() && e.ns_of(p).is_none() {
        return err("undeclared prefix");
    }
    let mut seen = std::collections::BTreeSet::new();
    for a in &e.attrs {
        let (p, local) = split_name(&a.name);
        let ns = if p.is_empty() {
            ""
        } else {
            e.ns_of(p)
                .ok_or_else(|| XmlError("undeclared prefix".into()))?
        };
        if !seen.insert((ns, local)) {
            return err("duplicate attribute");
        }
    }
    Ok(())
}

/// Escape text for a test document.
#[cfg(test)]
pub(crate) fn tests_escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_prefixes_scopes_and_text() {
        let e = parse(
            "<?xml version=\"1.0\"?>\r\n<a:r xmlns:a=\"urn:a\" x=\"1&#xA;2\ty\"><b xmlns=\"urn:b\">t&amp;<![CDATA[<c>]]></b><!--n--></a:r>",
        )
        .unwrap();
        assert_eq!(e.name, "a:r");
        assert_eq!(e.expanded(), ("urn:a", "r"));
        assert_eq!(e.attr("x"), Some("1\n2 y"));
        let b = e.elements().next().unwrap();
        assert_eq!(b.expanded(), ("urn:b", "b"));
        assert_eq!(b.text(), "t&<c>");
        assert!(matches!(e.children.last(), Some(Node::Comment(c)) if c == "n"));
    }

    #[test]
    fn refuses_what_it_must() {
        for bad in [
            "<!DOCTYPE r [<!ENTITY x \"y\">]><r>&x;</r>",
            "<r>&x;</r>",
            "<r a='1' a='2'/>",
            "<p:r/>",
            "<r><s></r>",
            "<r/><r/>",
            "<r>&#0;</r>",
            "<r xmlns:p='urn:x' xmlns:q='urn:x' p:a='1' q:a='2'/>",
            "",
            "<r",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(parse(&deep).is_err());
    }
}
