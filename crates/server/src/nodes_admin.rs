//! The admin endpoint's node paths (`keycard node list|drain|adopt`).

use http::request::Parts;
use keycard_services::Keycard;
use keycard_services::nodes::valid_node_name;
use serde_json::{Value, json};

const PREFIX: &str = "/_keycard/admin/nodes";

/// Answer a node path; `None` for other paths.
pub(crate) async fn admin(kc: &Keycard, parts: &Parts) -> Option<(u16, Value)> {
    let rest = parts.uri.path().strip_prefix(PREFIX)?;
    if rest.is_empty() && parts.method == http::Method::GET {
        return Some((
            200,
            json!({"thisNode": kc.node_name(), "nodes": kc.list_nodes()}),
        ));
    }
    let (name, action) = rest.strip_prefix('/')?.split_once('/')?;
    if parts.method != http::Method::POST {
        return None;
    }
    if !valid_node_name(name) {
        return Some((
            400,
            json!({"error": "InvalidParameterValue", "message": format!("Invalid node name '{name}'")}),
        ));
    }
    let done = match action {
        "adopt" => kc
            .adopt_node(name)
            .await
            .map(|ids| json!({"node": kc.node_name(), "adopted": ids})),
        "drain" => kc.drain_node(name).await.map(|moved| {
            let moved: Vec<Value> = moved
                .into_iter()
                .map(|(id, node)| json!({"instanceId": id, "node": node}))
                .collect();
            json!({"drained": name, "moved": moved})
        }),
        _ => return None,
    };
    Some(match done {
        Ok(v) => (200, v),
        Err(e) => (
            e.status(),
            json!({"error": e.code(), "message": e.message()}),
        ),
    })
}
