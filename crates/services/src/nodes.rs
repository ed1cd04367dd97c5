//! Nodes of a shared store: each instance belongs to one node (the one
//! that runs its metadata service, as a host's agent does on EC2); every
//! node heartbeats into the store's meta table (outside the change feed,
//! so beats do not grow it); an instance whose node stopped beating is
//! impaired until another node adopts it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ec2::Instance;
use crate::model::{Change, Entity, Tag};
use crate::{Keycard, Result, ServiceError, now_ms};

/// The node of instances recorded before nodes existed, and of a
/// `keycard serve` with neither `--node` nor a hostname.
pub const DEFAULT_NODE: &str = "default";

/// A launch tag that places the instance on another live node.
pub const NODE_TAG: &str = "keycard:node";

/// Meta keys of heartbeats: `node/NAME`.
const BEAT_PREFIX: &str = "node/";

/// One node's last heartbeat, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Beat {
    pub name: String,
    /// When it last beat (ms since the epoch, the node's clock).
    pub at_ms: i64,
    /// When the process started.
    pub started_ms: i64,
    /// Where its API listens.
    #[serde(default)]
    pub api: Option<String>,
    /// It stopped cleanly: down at once, without waiting for the bound.
    #[serde(default)]
    pub stopped: bool,
}

/// Whether a node runs its instances' metadata services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    Live,
    /// Down since its last beat (`None`: never seen), and why.
    Down {
        since_ms: Option<i64>,
        reason: String,
    },
}

/// A row of `keycard node list`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    pub name: String,
    pub live: bool,
    pub last_beat_ms: Option<i64>,
    pub api: Option<String>,
    pub instances: usize,
    pub this_node: bool,
}

/// A valid node name: 1-64 of letters, digits, `.`, `_`, `-`.
pub fn valid_node_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl Instance {
    /// The node that runs its metadata service.
    pub fn owner(&self) -> &str {
        self.node.as_deref().unwrap_or(DEFAULT_NODE)
    }
}

impl Keycard {
    /// This node's name (`--node`).
    pub fn node_name(&self) -> &str {
        &self.config.node
    }

    /// Whether instances are split between nodes (a shared store).
    pub fn has_nodes(&self) -> bool {
        self.config.node_timeout.is_some()
    }

    /// Whether this node does the store-wide background work (trail
    /// delivery, lifecycle sweeps): with several nodes over one store only
    /// the first live one by name does, so nothing is done twice (a node
    /// that dies hands over within the node timeout).
    pub fn leads_background_work(&self) -> bool {
        if !self.has_nodes() {
            return true;
        }
        self.list_nodes()
            .into_iter()
            .filter(|n| n.live)
            .map(|n| n.name)
            .min()
            .is_none_or(|first| first == self.node_name())
    }

    /// Whether this node runs the instance's metadata service: every
    /// instance with a store of its own, else the ones it owns.
    pub fn serves(&self, i: &Instance) -> bool {
        !self.has_nodes() || i.owner() == self.config.node
    }

    /// Whether a node is running its instances (this one always is).
    pub fn liveness(&self, node: &str) -> Liveness {
        let Some(timeout) = self.config.node_timeout else {
            return Liveness::Live;
        };
        if node == self.config.node {
            return Liveness::Live;
        }
        let beats = self.beats.read().unwrap_or_else(|e| e.into_inner());
        let Some(b) = beats.get(node) else {
            return Liveness::Down {
                since_ms: None,
                reason: format!("Node {node} has never sent a heartbeat"),
            };
        };
        let age = now_ms().saturating_sub(b.at_ms);
        if b.stopped {
            Liveness::Down {
                since_ms: Some(b.at_ms),
                reason: format!("Node {node} stopped"),
            }
        } else if age > i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX) {
            Liveness::Down {
                since_ms: Some(b.at_ms),
                reason: format!("Node {node} has not sent a heartbeat for {} s", age / 1000),
            }
        } else {
            Liveness::Live
        }
    }

    fn beat_now(&self, stopped: bool) -> Beat {
        let api = self
            .runtime
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .api_addr
            .map(|a| a.to_string());
        Beat {
            name: self.config.node.clone(),
            at_ms: now_ms(),
            started_ms: self.started_ms,
            api,
            stopped,
        }
    }

    /// Store this node's beat and read every node's.
    pub async fn heartbeat(&self) -> Result<()> {
        self.put_beat(false).await?;
        self.read_beats().await
    }

    async fn put_beat(&self, stopped: bool) -> Result<()> {
        let beat = self.beat_now(stopped);
        let json = serde_json::to_vec(&beat).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let key = format!("{BEAT_PREFIX}{}", beat.name);
        self.store.put_meta(&key, &json).await?;
        Ok(())
    }

    async fn read_beats(&self) -> Result<()> {
        let mut all = BTreeMap::new();
        for (key, value) in self.store.list_meta(BEAT_PREFIX).await? {
            match serde_json::from_slice::<Beat>(&value) {
                Ok(b) => {
                    all.insert(b.name.clone(), b);
                }
                Err(e) => tracing::warn!(key, error = %e, "unreadable node heartbeat; skipped"),
            }
        }
        *self.beats.write().unwrap_or_else(|e| e.into_inner()) = all;
        Ok(())
    }

    /// Say this node stopped (a clean shutdown): its instances show
    /// impaired at once.
    pub async fn heartbeat_stopped(&self) -> Result<()> {
        self.put_beat(true).await
    }

    /// Beat every `period` until the keycard is dropped.
    pub fn spawn_heartbeat(self: &Arc<Self>, period: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(kc) = weak.upgrade() else { return };
                if let Err(e) = kc.heartbeat().await {
                    tracing::debug!(error = %e, "heartbeat: store unreachable; will retry");
                }
            }
        })
    }

    /// Every node known from beats or instance records.
    pub fn list_nodes(&self) -> Vec<NodeInfo> {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        counts.insert(self.config.node.clone(), 0);
        for i in self.state().instances.values() {
            if !i.is_terminated() {
                *counts.entry(i.owner().to_string()).or_default() += 1;
            }
        }
        let beats = self.beats.read().unwrap_or_else(|e| e.into_inner()).clone();
        for name in beats.keys() {
            counts.entry(name.clone()).or_default();
        }
        counts
            .into_iter()
            .map(|(name, instances)| {
                let beat = beats.get(&name);
                NodeInfo {
                    live: self.liveness(&name) == Liveness::Live,
                    last_beat_ms: beat.map(|b| b.at_ms),
                    api: beat.and_then(|b| b.api.clone()),
                    this_node: name == self.config.node,
                    instances,
                    name,
                }
            })
            .collect()
    }

    /// The node a launch goes to: a `keycard:node` tag's, else this one.
    pub(crate) fn launch_node(&self, tags: &[Tag]) -> Result<String> {
        let Some(t) = tags.iter().find(|t| t.key == NODE_TAG) else {
            return Ok(self.config.node.clone());
        };
        if !valid_node_name(&t.value) {
            return Err(ServiceError::InvalidParameterValue(format!(
                "Invalid value '{}' for tag {NODE_TAG}: a node name is 1-64 letters, digits, '.', '_' or '-'",
                t.value
            )));
        }
        if let Liveness::Down { reason, .. } = self.liveness(&t.value) {
            return Err(ServiceError::InvalidParameterValue(format!(
                "Cannot place instances on node {}: {reason}",
                t.value
            )));
        }
        Ok(t.value.clone())
    }

    /// Move a dead node's instances onto this node. Credentials already
    /// handed out stay valid (their association is unchanged).
    pub async fn adopt_node(&self, from: &str) -> Result<Vec<String>> {
        if from == self.config.node {
            return Err(ServiceError::InvalidParameterValue(format!(
                "Node {from} is this node"
            )));
        }
        if self.liveness(from) == Liveness::Live {
            return Err(ServiceError::InvalidParameterValue(format!(
                "Node {from} is live: drain it instead of adopting its instances"
            )));
        }
        let to = self.config.node.clone();
        let moved = self.move_instances(from, |_| Ok(to.clone())).await?;
        Ok(moved.into_iter().map(|(id, _)| id).collect())
    }

    /// Move a node's instances to the other live nodes, fewest first.
    pub async fn drain_node(&self, name: &str) -> Result<Vec<(String, String)>> {
        let mut load: BTreeMap<String, usize> = self
            .list_nodes()
            .into_iter()
            .filter(|n| n.live && n.name != name)
            .map(|n| (n.name, n.instances))
            .collect();
        if load.is_empty() {
            return Err(ServiceError::InvalidParameterValue(format!(
                "No other live node to drain node {name} to"
            )));
        }
        self.move_instances(name, move |_| {
            let (target, _) = load
                .iter()
                .min_by_key(|(n, c)| (**c, (*n).clone()))
                .map(|(n, c)| (n.clone(), *c))
                .ok_or_else(|| ServiceError::Internal("no drain target".into()))?;
            if let Some(c) = load.get_mut(&target) {
                *c += 1;
            }
            Ok(target)
        })
        .await
    }

    /// Rewrite the owner of every unterminated instance of `from`.
    async fn move_instances(
        &self,
        from: &str,
        mut pick: impl FnMut(&Instance) -> Result<String>,
    ) -> Result<Vec<(String, String)>> {
        self.mutate(|st| {
            let mut changes = Vec::new();
            let mut moved = Vec::new();
            for i in st.instances.values() {
                if i.is_terminated() || i.owner() != from {
                    continue;
                }
                let to = pick(i)?;
                let mut next = (**i).clone();
                next.node = Some(to.clone());
                for t in next.tags.iter_mut().filter(|t| t.key == NODE_TAG) {
                    t.value = to.clone();
                }
                moved.push((next.id.clone(), to));
                changes.push(Change::Put(Entity::Instance(next)));
            }
            Ok((changes, moved))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        assert!(valid_node_name("node-a.example_1"));
        assert!(!valid_node_name(""));
        assert!(!valid_node_name("a b"));
        assert!(!valid_node_name(&"x".repeat(65)));
    }
}
