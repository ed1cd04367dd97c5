//! One IMDS request for one known instance: token rules first, then the
//! metadata tree. The caller was identified by the listener it reached.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use keycard_services::Keycard;
use keycard_services::delivery::{Delivery, RoleCredentials, instance_role};
use keycard_services::ec2::{Instance, user_data_bytes};
use keycard_services::sts::iso8601;
use keycard_services::vpc::{self, NetworkInterface};

use crate::{identity, token};

pub type Reply = Response<Full<Bytes>>;

pub const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
pub const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";

fn reply(status: u16, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    h.insert(http::header::SERVER, HeaderValue::from_static("EC2ws"));
    r
}

/// AWS answers errors with a small HTML page.
fn error_page(status: u16, title: &str) -> Reply {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\"\n\t\"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n<html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\n <head>\n  <title>{status} - {title}</title>\n </head>\n <body>\n  <h1>{status} - {title}</h1>\n </body>\n</html>\n"
    );
    let mut r = reply(status, body);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/html"),
    );
    r
}

/// The answer when the audit trail cannot record a credential issue.
pub fn unavailable() -> Reply {
    error_page(503, "Service Unavailable")
}

fn not_found() -> Reply {
    error_page(404, "Not Found")
}

fn json(v: &[(&str, String)]) -> String {
    let body: Vec<String> = v
        .iter()
        .map(|(k, val)| {
            format!(
                "  \"{k}\" : {}",
                serde_json::to_string(val).unwrap_or_else(|_| "\"\"".into())
            )
        })
        .collect();
    format!("{{\n{}\n}}", body.join(",\n"))
}

/// Answer `method path` for `instance_id`.
pub fn respond(
    kc: &Keycard,
    instance_id: &str,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    now: i64,
) -> Reply {
    if kc.is_stale() {
        // The node may miss a role change or a stopped instance.
        return unavailable();
    }
    let Some(inst) = kc.state().instances.get(instance_id).cloned() else {
        return not_found();
    };
    if !inst.is_running() {
        return not_found();
    }
    if inst.metadata.http_endpoint != "enabled" {
        return error_page(403, "Forbidden");
    }
    if !host_allowed(headers) {
        return error_page(403, "Forbidden");
    }
    let path = path.split('?').next().unwrap_or("");
    if *method == Method::PUT {
        return put_token(kc, &inst, path, headers, now);
    }
    if *method != Method::GET && *method != Method::HEAD {
        let mut r = error_page(405, "Method Not Allowed");
        r.headers_mut().insert(
            http::header::ALLOW,
            HeaderValue::from_static("GET, HEAD, PUT"),
        );
        return r;
    }
    // IMDSv2 when a token comes, v1 otherwise (if the instance allows it).
    let delivery = match headers.get(TOKEN_HEADER) {
        Some(v) => {
            let ok = v
                .to_str()
                .is_ok_and(|t| token::check_session(kc, &inst.id, t, now));
            if !ok {
                return error_page(401, "Unauthorized");
            }
            Delivery::ImdsV2
        }
        None if inst.metadata.http_tokens == "required" => {
            return error_page(401, "Unauthorized");
        }
        None => Delivery::ImdsV1,
    };
    let mut r = get(kc, &inst, path, delivery);
    if *method == Method::HEAD {
        *r.body_mut() = Full::new(Bytes::new());
    }
    r
}

/// DNS-rebinding guard: a browser tricked into calling the IMDS sends the
/// attacker's host name; SDKs and curl send the address they dialed.
fn host_allowed(headers: &HeaderMap) -> bool {
    let Some(h) = headers.get(http::header::HOST) else {
        return true;
    };
    let Ok(h) = h.to_str() else {
        return false;
    };
    let host = match h.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => h.rsplit_once(':').map_or(h, |(host, _)| host),
    };
    host.parse::<std::net::IpAddr>().is_ok()
        || ["instance-data", "instance-data.ec2.internal", "localhost"]
            .iter()
            .any(|n| host.eq_ignore_ascii_case(n))
}

fn put_token(kc: &Keycard, inst: &Instance, path: &str, headers: &HeaderMap, now: i64) -> Reply {
    if path != "/latest/api/token" {
        // Only the unversioned token path exists; a versioned one is refused.
        return if path.ends_with("/api/token") {
            error_page(403, "Forbidden")
        } else {
            let mut r = error_page(405, "Method Not Allowed");
            r.headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        };
    }
    // A proxied request (SSRF through a forwarding proxy) gets no token.
    if headers.contains_key("x-forwarded-for") {
        return error_page(403, "Forbidden");
    }
    let ttl = headers
        .get(TTL_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|n| (1..=token::MAX_TTL).contains(n));
    let Some(ttl) = ttl else {
        return error_page(400, "Bad Request");
    };
    let t = token::mint_session(kc, &inst.id, now + ttl);
    let mut r = reply(200, t);
    if let Ok(v) = HeaderValue::from_str(&ttl.to_string()) {
        r.headers_mut().insert(TTL_HEADER, v);
    }
    r
}

/// `network/interfaces/macs/<mac>/…`: the instance's interfaces (the
/// primary one, then those attached beside it) as
/// DescribeNetworkInterfaces shows them (keycard_services::vpc, eni).
fn network(kc: &Keycard, inst: &Instance, path: &str) -> Reply {
    let Some(primary) = vpc::interface_of(inst) else {
        return not_found();
    };
    let mut all = vec![primary];
    if let Some((_, more)) = kc.instance_interfaces(&[&inst.id]).into_iter().next() {
        all.extend(more);
    }
    let Some(rest) = path.strip_prefix("network/interfaces/macs/") else {
        let dirs: Vec<String> = all.iter().map(|e| format!("{}/", e.mac)).collect();
        let dirs: Vec<&str> = dirs.iter().map(String::as_str).collect();
        return match path {
            "network" => listing(&["interfaces/"]),
            "network/interfaces" => listing(&["macs/"]),
            "network/interfaces/macs" => listing(&dirs),
            _ => not_found(),
        };
    };
    let (mac, leaf) = rest.split_once('/').unwrap_or((rest, ""));
    match all.iter().find(|e| e.mac == mac) {
        Some(eni) => interface_leaf(eni, leaf),
        None => not_found(),
    }
}

/// One interface's `macs/<mac>/<leaf>`.
fn interface_leaf(eni: &NetworkInterface, leaf: &str) -> Reply {
    let text = |s: &str| reply(200, s.to_string());
    let ids: Vec<&str> = eni.groups.iter().map(|g| g.id.as_str()).collect();
    let names: Vec<&str> = eni.groups.iter().map(|g| g.name.as_str()).collect();
    let device = eni
        .attachment
        .as_ref()
        .map_or(0, |a| a.device_index)
        .to_string();
    match leaf {
        "" => listing(&[
            "device-number",
            "interface-id",
            "local-hostname",
            "local-ipv4s",
            "mac",
            "owner-id",
            "security-group-ids",
            "security-groups",
            "subnet-id",
            "subnet-ipv4-cidr-block",
            "vpc-id",
            "vpc-ipv4-cidr-block",
            "vpc-ipv4-cidr-blocks",
        ]),
        "device-number" => text(&device),
        "interface-id" => text(&eni.id),
        "local-hostname" => text(&eni.private_dns),
        "local-ipv4s" => text(&eni.private_ip),
        "mac" => text(&eni.mac),
        "owner-id" => text(&eni.account),
        "security-group-ids" => text(&ids.join("\n")),
        "security-groups" => text(&names.join("\n")),
        "subnet-id" => text(&eni.subnet_id),
        "subnet-ipv4-cidr-block" => text(&eni.subnet_cidr),
        "vpc-id" => text(&eni.vpc_id),
        "vpc-ipv4-cidr-block" | "vpc-ipv4-cidr-blocks" => text(&eni.vpc_cidr),
        _ => not_found(),
    }
}

/// Directory listings: one entry a line, no trailing newline.
fn listing(entries: &[&str]) -> Reply {
    reply(200, entries.join("\n"))
}

fn get(kc: &Keycard, inst: &Instance, path: &str, delivery: Delivery) -> Reply {
    // `/latest/...` or a dated version; everything is served as latest.
    let Some(rest) = path.strip_prefix('/') else {
        return not_found();
    };
    if rest.is_empty() {
        return listing(&["latest"]);
    }
    let (version, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let dated = version.len() == 10 && version.bytes().all(|c| c.is_ascii_digit() || c == b'-');
    if version != "latest" && !dated {
        return not_found();
    }
    let has_user_data = inst.user_data.is_some();
    match rest {
        "" => {
            let mut e = vec!["dynamic", "meta-data"];
            if has_user_data {
                e.push("user-data");
            }
            listing(&e)
        }
        "user-data" | "user-data/" => match user_data_bytes(inst) {
            Some(b) => {
                let mut r = reply(200, b);
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                r
            }
            None => not_found(),
        },
        "dynamic" | "dynamic/" => listing(&["instance-identity/"]),
        "dynamic/instance-identity" | "dynamic/instance-identity/" => {
            listing(&["document", "signature"])
        }
        "dynamic/instance-identity/document" => reply(200, identity::document(inst)),
        "dynamic/instance-identity/signature" => {
            reply(200, identity::signature(kc, &identity::document(inst)))
        }
        _ => match rest.strip_prefix("meta-data") {
            Some(m) => meta_data(kc, inst, m, delivery),
            None => not_found(),
        },
    }
}

fn meta_data(kc: &Keycard, inst: &Instance, path: &str, delivery: Delivery) -> Reply {
    let path = path.strip_prefix('/').unwrap_or(path);
    let tags_on = inst.metadata.instance_metadata_tags == "enabled";
    // Leaves also answer with a trailing slash (botocore asks for
    // `placement/availability-zone/`).
    let leaf = path.trim_end_matches('/');
    let text = |s: String| reply(200, s);
    match leaf {
        "" => {
            let mut e = vec!["ami-id", "ami-launch-index", "hostname"];
            if inst.profile.is_some() {
                e.push("iam/");
            }
            e.extend([
                "instance-action",
                "instance-id",
                "instance-life-cycle",
                "instance-type",
                "local-hostname",
                "local-ipv4",
                "mac",
                "network/",
                "placement/",
            ]);
            if inst.public_key.is_some() {
                e.push("public-keys/");
            }
            e.extend(["reservation-id", "security-groups"]);
            if tags_on {
                e.push("tags/");
            }
            listing(&e)
        }
        "ami-id" => text(inst.image_id.clone()),
        "ami-launch-index" => text(inst.launch_index.to_string()),
        "hostname" | "local-hostname" => text(inst.private_dns()),
        "instance-action" => text("none".into()),
        "instance-id" => text(inst.id.clone()),
        "instance-life-cycle" => text("on-demand".into()),
        "instance-type" => text(inst.instance_type.clone()),
        "local-ipv4" => text(inst.private_ip.clone().unwrap_or_default()),
        "mac" => text(inst.mac()),
        "reservation-id" => text(inst.reservation_id.clone()),
        "security-groups" => text(
            vpc::interface_of(inst)
                .map(|e| {
                    e.groups
                        .iter()
                        .map(|g| g.name.as_str())
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_else(|| vpc::DEFAULT_GROUP.to_string()),
        ),
        "placement" => listing(&["availability-zone", "availability-zone-id", "region"]),
        // The launch key, as `0=<name>` and its OpenSSH line.
        "public-keys" if inst.public_key.is_some() => text(format!(
            "0={}",
            inst.key_name.as_deref().unwrap_or_default()
        )),
        "public-keys/0" if inst.public_key.is_some() => listing(&["openssh-key"]),
        "public-keys/0/openssh-key" => match &inst.public_key {
            Some(k) => text(k.clone()),
            None => not_found(),
        },
        "placement/availability-zone" => text(inst.availability_zone()),
        "placement/availability-zone-id" => text(
            vpc::interface_of(inst)
                .map(|e| e.zone_id)
                .unwrap_or_else(|| vpc::zone_id(&inst.region, 0)),
        ),
        "placement/region" => text(inst.region.clone()),
        l if l == "network" || l.starts_with("network/") => network(kc, inst, l),
        "tags" if tags_on => listing(&["instance"]),
        "tags/instance" if tags_on => {
            let keys: Vec<&str> = inst.tags.iter().map(|t| t.key.as_str()).collect();
            listing(&keys)
        }
        l if tags_on && l.starts_with("tags/instance/") => {
            let key = &l["tags/instance/".len()..];
            match inst.tags.iter().find(|t| t.key == key) {
                Some(t) => text(t.value.clone()),
                None => not_found(),
            }
        }
        "iam" if inst.profile.is_some() => listing(&["info", "security-credentials/"]),
        "iam/info" => iam_info(kc, inst),
        "iam/security-credentials" => match instance_role(kc, inst) {
            Some((name, _)) => text(name),
            None => not_found(),
        },
        l => match l.strip_prefix("iam/security-credentials/") {
            Some(name) => credentials(kc, inst, name, delivery),
            None => not_found(),
        },
    }
}

fn iam_info(kc: &Keycard, inst: &Instance) -> Reply {
    let Some(a) = &inst.profile else {
        return not_found();
    };
    if instance_role(kc, inst).is_none() {
        return not_found();
    }
    reply(
        200,
        json(&[
            ("Code", "Success".into()),
            ("LastUpdated", iso8601(a.timestamp)),
            ("InstanceProfileArn", a.profile_arn.clone()),
            ("InstanceProfileId", a.profile_id.clone()),
        ]),
    )
}

fn credentials(kc: &Keycard, inst: &Instance, name: &str, delivery: Delivery) -> Reply {
    match kc.instance_credentials(&inst.id, delivery) {
        RoleCredentials::NoRole => not_found(),
        RoleCredentials::Unassumable { role, message } => {
            if role != name {
                return not_found();
            }
            reply(
                200,
                json(&[
                    ("Code", "AssumeRoleUnauthorizedAccess".into()),
                    ("Message", message),
                    ("LastUpdated", iso8601(keycard_services::now())),
                ]),
            )
        }
        RoleCredentials::Issued {
            role,
            credentials: c,
            issued,
        } => {
            if role != name {
                return not_found();
            }
            reply(
                200,
                json(&[
                    ("Code", "Success".into()),
                    ("LastUpdated", iso8601(issued)),
                    ("Type", "AWS-HMAC".into()),
                    ("AccessKeyId", c.access_key_id.clone()),
                    ("SecretAccessKey", c.secret_access_key.expose().to_string()),
                    ("Token", c.session_token.clone()),
                    ("Expiration", iso8601(c.expiration)),
                ]),
            )
        }
    }
}

/// The container credentials endpoint: the `Authorization` header names
/// the instance; the body is the ECS / EKS Pod Identity JSON.
pub fn container(kc: &Keycard, headers: &HeaderMap) -> Reply {
    if kc.is_stale() {
        return unavailable();
    }
    let err = |status: u16, code: &str, msg: &str| {
        let mut r = reply(
            status,
            serde_json::json!({"code": code, "message": msg}).to_string(),
        );
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    let Some(auth) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return err(
            401,
            "MissingAuthorization",
            "Authorization header is required",
        );
    };
    let Some(id) = token::open_container(kc, auth) else {
        return err(403, "AccessDenied", "The authorization token is not valid");
    };
    match kc.instance_credentials(&id, Delivery::Container) {
        RoleCredentials::Issued { credentials: c, .. } => {
            let account = kc
                .state()
                .instances
                .get(&id)
                .map(|i| i.account.clone())
                .unwrap_or_default();
            let mut r = reply(
                200,
                serde_json::json!({
                    "AccessKeyId": c.access_key_id,
                    "SecretAccessKey": c.secret_access_key.expose(),
                    "Token": c.session_token,
                    "Expiration": iso8601(c.expiration),
                    "AccountId": account,
                })
                .to_string(),
            );
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        RoleCredentials::Unassumable { message, .. } => err(403, "AccessDenied", &message),
        RoleCredentials::NoRole => err(
            404,
            "NotFound",
            "The instance is not running or has no role attached",
        ),
    }
}
