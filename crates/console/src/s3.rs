//! S3: buckets, objects browsed by prefix, upload (a multipart form
//! whose file becomes a PutObject) and download (GetObject, streamed
//! through as it comes from the API, sent as an attachment of type application/octet-stream so a stored page never
//! renders in the console's origin).

use bytes::Bytes;
use http::{Method, StatusCode};
use maud::html;

use crate::layout::{api_error, csrf_field, error_page, flash, frame};
use crate::xml::{Find, Node};
use crate::{Ctx, Page, enc, uri_enc};

pub async fn route(ctx: &Ctx<'_>, segs: &[&str], post: bool) -> Option<Page> {
    let page = match (segs, post) {
        (["s3"], false) => buckets(ctx).await,
        (["s3", b], false) => objects(ctx, &crate::decode(b)).await,
        (["s3", b, "object"], false) => download(ctx, &crate::decode(b)).await,
        (["s3", b, "upload"], true) => upload(ctx, &crate::decode(b)).await,
        _ => return None,
    };
    Some(page)
}

fn parse(b: &Bytes) -> Node {
    Node::parse(b)
}

/// Direct children named `name` of the answer's root.
fn items<'a>(doc: &'a Node, name: &'a str) -> Vec<&'a Node> {
    doc.children_named(name).collect()
}

async fn buckets(ctx: &Ctx<'_>) -> Page {
    let r = ctx.rest("s3", Method::GET, "/", "", None).await;
    let doc = match r {
        Ok(b) => parse(&b),
        Err(e) => return api_error(ctx, "Buckets", &e),
    };
    let list = doc.list("Buckets", "Bucket");
    Page::ok(frame(
        ctx,
        "Buckets",
        html! {
            h1 { "Buckets " span.muted { "(" (list.len()) ")" } }
            table id="buckets" {
                thead { tr { th { "Name" } th { "Created" } } }
                tbody {
                    @for b in &list {
                        @let name = b.text_of("Name");
                        tr {
                            td { a href={ "/console/s3/" (enc(&name)) } { (name) } }
                            td { (b.text_of("CreationDate")) }
                        }
                    }
                }
            }
        },
    ))
}

async fn objects(ctx: &Ctx<'_>, bucket: &str) -> Page {
    let prefix = ctx.field("prefix");
    let q = format!(
        "delimiter=%2F&list-type=2&max-keys=1000&prefix={}",
        uri_enc(&prefix, false)
    );
    let path = format!("/{}", uri_enc(bucket, false));
    let doc = match ctx.rest("s3", Method::GET, &path, &q, None).await {
        Ok(b) => parse(&b),
        Err(e) => return api_error(ctx, bucket, &e),
    };
    let base = format!("/console/s3/{}", enc(bucket));
    let up = parent(&prefix);
    Page::ok(frame(
        ctx,
        bucket,
        html! {
            p.steps { a href="/console/s3" { "Buckets" } " › " a href=(base) { (bucket) } @if !prefix.is_empty() { " › " (prefix) } }
            h1 id="bucket-name" { (bucket) }
            (flash(ctx))
            @if !prefix.is_empty() { p { a href={ (base) "?prefix=" (enc(&up)) } id="up" { "↑ Up" } } }
            table id="objects" {
                thead { tr { th { "Name" } th { "Size" } th { "Last modified" } } }
                tbody {
                    @for p in items(&doc, "CommonPrefixes") {
                        @let pfx = p.text_of("Prefix");
                        tr.folder { td { a href={ (base) "?prefix=" (enc(&pfx)) } { (pfx.strip_prefix(prefix.as_str()).unwrap_or(&pfx)) } } td { "Folder" } td {} }
                    }
                    @for o in items(&doc, "Contents") {
                        @let key = o.text_of("Key");
                        tr.object data-key=(key) {
                            td { a href={ (base) "/object?key=" (enc(&key)) } { (key.strip_prefix(prefix.as_str()).unwrap_or(&key)) } }
                            td { (o.text_of("Size")) }
                            td { (o.text_of("LastModified")) }
                        }
                    }
                }
            }
            h2 { "Upload" }
            form method="post" action={ (base) "/upload" } enctype="multipart/form-data" id="upload" {
                (csrf_field(ctx))
                input type="hidden" name="prefix" value=(prefix);
                label for="upload-file" { "File" }
                input type="file" id="upload-file" name="file";
                label for="upload-key" { "Object name " span.muted { "(default: the file's name; under " (if prefix.is_empty() { "/" } else { prefix.as_str() }) ")" } }
                input type="text" id="upload-key" name="key";
                p { button.primary type="submit" id="upload-submit" { "Upload" } }
            }
        },
    ))
}

/// The prefix one level up (`a/b/` → `a/`).
fn parent(prefix: &str) -> String {
    let t = prefix.trim_end_matches('/');
    match t.rfind('/') {
        Some(i) => t.get(..=i).unwrap_or("").to_string(),
        None => String::new(),
    }
}

async fn upload(ctx: &Ctx<'_>, bucket: &str) -> Page {
    let Some(file) = ctx.file("file") else {
        return error_page(
            ctx,
            StatusCode::BAD_REQUEST,
            "Upload",
            "Choose a file to upload.",
        );
    };
    let name = match ctx.field("key") {
        k if k.is_empty() => file.filename.clone().unwrap_or_default(),
        k => k,
    };
    let key = format!("{}{name}", ctx.field("prefix"));
    let path = format!("/{}/{}", uri_enc(bucket, false), uri_enc(&key, true));
    let body = Some((file.content_type.clone(), file.data.clone()));
    match ctx.rest("s3", Method::PUT, &path, "", body).await {
        Ok(_) => Page::redirect(format!(
            "/console/s3/{}?prefix={}&done=uploaded",
            enc(bucket),
            enc(&ctx.field("prefix"))
        )),
        Err(e) => api_error(ctx, "Upload", &e),
    }
}

async fn download(ctx: &Ctx<'_>, bucket: &str) -> Page {
    let key = ctx.field("key");
    let path = format!("/{}/{}", uri_enc(bucket, false), uri_enc(&key, true));
    match ctx.download("s3", &path).await {
        Ok(stream) => {
            let body = crate::ConsoleBody::Stream(stream);
            let mut p = Page::body(StatusCode::OK, "application/octet-stream", body);
            let base = key.rsplit('/').next().unwrap_or("download");
            p.headers.push((
                http::header::CONTENT_DISPOSITION,
                format!("attachment; filename*=UTF-8''{}", uri_enc(base, false)),
            ));
            p
        }
        Err(e) => api_error(ctx, &key, &e),
    }
}
