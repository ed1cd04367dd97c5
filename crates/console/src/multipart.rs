//! `multipart/form-data` (RFC 7578), enough for the console's upload
//! form: text fields and files, whole in memory (bounded by
//! [`crate::MAX_UPLOAD`]).

use bytes::Bytes;

/// One part of a multipart body.
pub struct Part {
    pub name: String,
    /// Present for file inputs (the browser's file name).
    pub filename: Option<String>,
    pub content_type: String,
    pub data: Bytes,
}

/// The boundary of a `multipart/form-data` request, if it is one.
pub fn boundary(headers: &http::HeaderMap) -> Option<String> {
    let ct = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    let (kind, params) = ct.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim_matches('"').to_string())
        .filter(|b| !b.is_empty() && b.len() <= 70)
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// The parts of `body`; a malformed body yields the parts read so far.
pub fn parse(body: &Bytes, boundary: &str) -> Vec<Part> {
    let delim = format!("--{boundary}");
    let mut parts = Vec::new();
    let Some(mut at) = find(body, delim.as_bytes(), 0) else {
        return parts;
    };
    loop {
        let start = at + delim.len();
        if body.get(start..start + 2) == Some(b"--") {
            break;
        }
        let Some(head_end) = find(body, b"\r\n\r\n", start) else {
            break;
        };
        let next_delim = format!("\r\n{delim}");
        let Some(end) = find(body, next_delim.as_bytes(), head_end + 4) else {
            break;
        };
        let head = String::from_utf8_lossy(body.get(start..head_end).unwrap_or_default());
        if let Some(p) = part(&head, body.slice(head_end + 4..end)) {
            parts.push(p);
        }
        at = end + 2;
    }
    parts
}

fn part(head: &str, data: Bytes) -> Option<Part> {
    let mut name = None;
    let mut filename = None;
    let mut content_type = "application/octet-stream".to_string();
    for line in head.split("\r\n") {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        if k.trim().eq_ignore_ascii_case("content-type") {
            content_type = v.trim().to_string();
        }
        if k.trim().eq_ignore_ascii_case("content-disposition") {
            name = param(v, "name");
            filename = param(v, "filename");
        }
    }
    Some(Part {
        name: name?,
        filename,
        content_type,
        data,
    })
}

/// A quoted parameter of a Content-Disposition value (browsers escape
/// `"` as `%22`, which is kept as the browser sent it).
fn param(v: &str, key: &str) -> Option<String> {
    v.split(';').find_map(|p| {
        let (k, val) = p.trim().split_once('=')?;
        (k.trim() == key).then(|| val.trim().trim_matches('"').to_string())
    })
}

/// Text fields as form pairs, files apart.
pub fn split(parts: Vec<Part>) -> (Vec<(String, String)>, Vec<Part>) {
    let (files, text): (Vec<Part>, Vec<Part>) =
        parts.into_iter().partition(|p| p.filename.is_some());
    let form = text
        .into_iter()
        .map(|p| (p.name, String::from_utf8_lossy(&p.data).into_owned()))
        .collect();
    (form, files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_and_a_binary_file() {
        let mut body = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nabc\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a <b>.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
        body.extend_from_slice(&[0, 1, 2, b'\r', b'\n', 255]);
        body.extend_from_slice(b"\r\n--XyZ--\r\n");
        let (form, files) = split(parse(&Bytes::from(body), "XyZ"));
        assert_eq!(form, vec![("csrf".to_string(), "abc".to_string())]);
        let f = files.first().expect("file");
        assert_eq!(f.filename.as_deref(), Some("a <b>.bin"));
        assert_eq!(&f.data[..], &[0, 1, 2, b'\r', b'\n', 255]);
        let mut h = http::HeaderMap::new();
        h.insert(
            "content-type",
            "multipart/form-data; boundary=XyZ".parse().expect("hv"),
        );
        assert_eq!(boundary(&h).as_deref(), Some("XyZ"));
        assert!(parse(&Bytes::from_static(b"garbage"), "XyZ").is_empty());
    }
}
