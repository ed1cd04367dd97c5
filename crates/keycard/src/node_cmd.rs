//! `keycard node list|drain|adopt`: the nodes of a shared store, through
//! the running node of the data dir (its admin endpoint).

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::Value;

use crate::{DataDir, admin_request, running_server};

#[derive(Subcommand)]
pub enum NodeCommand {
    /// Every node: live or down, last heartbeat, instance count.
    List {
        #[command(flatten)]
        data: DataDir,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Move a node's instances to the other live nodes (before
    /// maintenance): their metadata services move with them.
    Drain {
        #[command(flatten)]
        data: DataDir,
        /// The node to empty.
        name: String,
    },
    /// Take a dead node's instances onto this data dir's node.
    /// Credentials already handed out stay valid.
    Adopt {
        #[command(flatten)]
        data: DataDir,
        /// The dead node.
        name: String,
    },
}

pub async fn run(cmd: NodeCommand) -> anyhow::Result<()> {
    match cmd {
        NodeCommand::List { data, json } => {
            let v = call(&data, "GET", "/_keycard/admin/nodes").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_nodes(&v);
            }
        }
        NodeCommand::Drain { data, name } => {
            let v = call(
                &data,
                "POST",
                &format!("/_keycard/admin/nodes/{name}/drain"),
            )
            .await?;
            for m in v
                .get("moved")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                println!("{} -> {}", text(m, "instanceId"), text(m, "node"));
            }
        }
        NodeCommand::Adopt { data, name } => {
            let v = call(
                &data,
                "POST",
                &format!("/_keycard/admin/nodes/{name}/adopt"),
            )
            .await?;
            for id in v
                .get("adopted")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                println!(
                    "{} -> {}",
                    id.as_str().unwrap_or_default(),
                    text(&v, "node")
                );
            }
        }
    }
    Ok(())
}

async fn call(data: &DataDir, method: &str, path: &str) -> anyhow::Result<Value> {
    let (addr, token) = running_server(&data.path())?;
    let out = admin_request(&addr, method, path, &token, "").await?;
    serde_json::from_str(&out).context("the node's answer is not JSON")
}

fn text(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn print_nodes(v: &Value) {
    let now = keycard_services::now_ms();
    println!(
        "{:<24} {:<5} {:>10} {:>9}  API",
        "NODE", "STATE", "BEAT AGO", "INSTANCES"
    );
    for n in v
        .get("nodes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let live = n.get("live").and_then(Value::as_bool).unwrap_or(false);
        let ago = n.get("lastBeatMs").and_then(Value::as_i64).map_or_else(
            || "never".to_string(),
            |t| format!("{:.1}s", (now - t) as f64 / 1000.0),
        );
        let this = if n.get("thisNode").and_then(Value::as_bool) == Some(true) {
            " (this node)"
        } else {
            ""
        };
        println!(
            "{:<24} {:<5} {:>10} {:>9}  {}{this}",
            text(n, "name"),
            if live { "live" } else { "down" },
            ago,
            n.get("instances").and_then(Value::as_u64).unwrap_or(0),
            text(n, "api"),
        );
    }
}
