//! The Instance Metadata Service. Every running instance gets listeners
//! of its own, so the IMDS knows who is calling by where the connection
//! arrived and answers no one else:
//!
//! - **loopback** (default, no privileges): `127.77.A.B:PORT`, one address
//!   per instance; `keycard exec` points `AWS_EC2_METADATA_SERVICE_ENDPOINT`
//!   at it, and `AWS_ENDPOINT_URL` at keycard's API on the same address
//!   (the instance's own network path, so keycard knows calls that come
//!   from the instance).
//! - **netns** (root): a network namespace per instance with its private
//!   IP and `169.254.169.254:80` inside it, plus keycard's API on the
//!   namespace's `127.0.0.1`.
//!
//! Listeners follow the instance records: they open when an instance
//! runs and close when it stops or terminates.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod handler;
pub mod identity;
pub mod netns;
pub mod token;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use keycard_services::Keycard;
use keycard_services::binding::NetworkPath;
use keycard_services::ec2::ImdsHealth;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Serve keycard's API on a listener (used inside instance namespaces).
/// With a path, the listener is an instance's own network path.
pub type ApiServe = Arc<dyn Fn(TcpListener, Option<NetworkPath>) + Send + Sync>;

/// How instances reach their metadata service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Loopback,
    Netns,
}

#[derive(Clone)]
pub struct Options {
    pub network: Network,
    /// Port of the loopback listeners; 0 picks one at the first bind.
    pub port: u16,
    /// Port the API listens on (also used inside namespaces).
    pub api_port: u16,
    pub api: Option<ApiServe>,
}

/// How many other loopback blocks an instance's listener tries when its
/// slot's address is taken (by another keycard server on the host).
const FALLBACK_BLOCKS: u8 = 8;

/// Listeners of one running instance; dropping it closes them.
struct Live {
    /// The address the instance's slot picks (what reconciling compares).
    slot_addr: Ipv4Addr,
    /// Where the loopback listener really is (`None` in netns mode).
    bound: Option<Ipv4Addr>,
    tasks: Vec<JoinHandle<()>>,
    netns: Option<String>,
}

impl Drop for Live {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub struct Imds {
    kc: Arc<Keycard>,
    opts: Options,
    live: Mutex<HashMap<String, Live>>,
    port: Mutex<u16>,
    /// Port of the instances' loopback API listeners, once chosen.
    api_port: Mutex<Option<u16>>,
    /// Serializes reconciliations.
    reconcile_lock: tokio::sync::Mutex<()>,
}

impl Imds {
    pub fn new(kc: Arc<Keycard>, opts: Options) -> Arc<Imds> {
        let port = opts.port;
        Arc::new(Imds {
            kc,
            opts,
            live: Mutex::new(HashMap::new()),
            port: Mutex::new(port),
            api_port: Mutex::new(None),
            reconcile_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Follow instance changes until `shutdown` resolves, then close
    /// every listener (and delete namespaces).
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        if self.opts.network == Network::Netns {
            netns::cleanup_stale(&netns::prefix(&self.kc)).await;
        }
        let mut rx = self.kc.watch_instances();
        tokio::pin!(shutdown);
        loop {
            self.reconcile().await;
            tokio::select! {
                _ = &mut shutdown => break,
                r = rx.changed() => if r.is_err() { break },
            }
        }
        self.close_all().await;
    }

    async fn close_all(&self) {
        let all: Vec<Live> = {
            let mut m = self.live.lock().unwrap_or_else(|e| e.into_inner());
            m.drain().map(|(_, l)| l).collect()
        };
        for l in all {
            if let Some(ns) = &l.netns {
                netns::delete(ns).await;
            }
        }
    }

    /// Open listeners for running instances, close the rest.
    pub async fn reconcile(&self) {
        let _g = self.reconcile_lock.lock().await;
        let desired: HashMap<String, (Ipv4Addr, String)> = {
            let st = self.kc.state();
            st.instances
                .values()
                .filter(|i| i.is_running() && self.kc.serves(i))
                .map(|i| {
                    (
                        i.id.clone(),
                        (i.slot_imds_addr(), i.private_ip.clone().unwrap_or_default()),
                    )
                })
                .collect()
        };
        // Close first, so a reused address is free again.
        let gone: Vec<(String, Live)> = {
            let mut m = self.live.lock().unwrap_or_else(|e| e.into_inner());
            let ids: Vec<String> = m
                .iter()
                .filter(|(id, l)| desired.get(*id).is_none_or(|(a, _)| *a != l.slot_addr))
                .map(|(id, _)| id.clone())
                .collect();
            ids.into_iter()
                .filter_map(|id| m.remove(&id).map(|l| (id, l)))
                .collect()
        };
        for (id, l) in gone {
            self.kc.forget_instance_credentials(&id);
            self.kc.record_imds(&id, ImdsHealth::Unknown);
            if let Some(ns) = &l.netns {
                netns::delete(ns).await;
            }
        }
        let todo: Vec<(String, (Ipv4Addr, String))> = {
            let m = self.live.lock().unwrap_or_else(|e| e.into_inner());
            desired
                .into_iter()
                .filter(|(id, _)| !m.contains_key(id))
                .collect()
        };
        for (id, (addr, ip)) in todo {
            let live = match self.opts.network {
                Network::Loopback => self.open_loopback(&id, addr, &ip).await,
                Network::Netns => self.open_netns(&id, addr, &ip).await,
            };
            match live {
                Ok(l) => {
                    self.live
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(id, l);
                }
                Err(e) => {
                    tracing::error!(instance = %id, error = %e, "cannot open the instance's metadata service");
                    let reason = format!("The instance metadata service could not open: {e}");
                    self.kc.record_imds(
                        &id,
                        ImdsHealth::Failed {
                            since: keycard_services::now(),
                            reason,
                        },
                    );
                }
            }
        }
        self.record_bound();
    }

    /// Put each open listener's address on its instance record (again:
    /// a write of the instance made from an older copy drops it).
    fn record_bound(&self) {
        let bound: Vec<(String, Ipv4Addr)> = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|(id, l)| l.bound.map(|a| (id.clone(), a)))
            .collect();
        for (id, a) in bound {
            self.kc.record_imds(&id, ImdsHealth::Serving(a));
        }
    }

    /// Addresses an instance's listener tries, in order: its slot's
    /// `127.77.A.B`, then `127.X.A.B` in blocks this server derives from
    /// its master key, so two servers falling back rarely meet again.
    fn candidates(&self, slot_addr: Ipv4Addr) -> Vec<Ipv4Addr> {
        let [_, _, a, b] = slot_addr.octets();
        let tag = self.kc.mac("keycard imds block v1", b"");
        let start = tag.first().copied().unwrap_or(0);
        std::iter::once(slot_addr)
            .chain((0..FALLBACK_BLOCKS).map(|k| {
                // Blocks 78..=253: clear of 127.0.x.x and of 127.77.
                let x = 78 + (u16::from(start) + u16::from(k) * 37) % 176;
                Ipv4Addr::new(127, x as u8, a, b)
            }))
            .collect()
    }

    /// Open the instance's listener at the first free candidate address;
    /// only "address in use" moves on to the next.
    async fn open_loopback(
        &self,
        id: &str,
        slot_addr: Ipv4Addr,
        ip: &str,
    ) -> std::io::Result<Live> {
        let mut tried = Vec::new();
        for addr in self.candidates(slot_addr) {
            let bound = match self.bind_loopback(addr).await {
                Ok(l) => match self.bind_instance_api(addr).await {
                    Ok(api) => Ok((l, api)),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match bound {
                Ok((l, api_l)) => {
                    if addr != slot_addr {
                        tracing::warn!(instance = %id, taken = %slot_addr, using = %addr,
                            "metadata address in use (another server?): listening elsewhere");
                    }
                    let mut tasks = vec![tokio::spawn(serve_imds(
                        self.kc.clone(),
                        l,
                        id.to_string(),
                        None,
                    ))];
                    self.serve_api(&mut tasks, api_l, id, ip);
                    return Ok(Live {
                        slot_addr,
                        bound: Some(addr),
                        tasks,
                        netns: None,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => tried.push(addr),
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!(
                "port {} is in use at {} and {} other loopback addresses",
                self.port(),
                slot_addr,
                tried.len().saturating_sub(1)
            ),
        ))
    }

    /// Bind one loopback address on the server's IMDS port (the first
    /// bind picks the port when it is 0).
    async fn bind_loopback(&self, addr: Ipv4Addr) -> std::io::Result<TcpListener> {
        let port = *self.port.lock().unwrap_or_else(|e| e.into_inner());
        let l = TcpListener::bind(SocketAddr::from((addr, port))).await?;
        if port == 0 {
            let chosen = l.local_addr()?.port();
            *self.port.lock().unwrap_or_else(|e| e.into_inner()) = chosen;
            let mut rt = self.kc.runtime.write().unwrap_or_else(|e| e.into_inner());
            rt.imds_port = Some(chosen);
        }
        Ok(l)
    }

    /// Bind the instance's API listener at its metadata address: the
    /// main API's port when free there, else one port chosen at the first
    /// bind and used by every instance after.
    async fn bind_instance_api(&self, addr: Ipv4Addr) -> std::io::Result<TcpListener> {
        let chosen = *self.api_port.lock().unwrap_or_else(|e| e.into_inner());
        let l = match chosen {
            Some(p) => TcpListener::bind(SocketAddr::from((addr, p))).await?,
            None => match TcpListener::bind(SocketAddr::from((addr, self.opts.api_port))).await {
                Ok(l) => l,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    TcpListener::bind(SocketAddr::from((addr, 0))).await?
                }
                Err(e) => return Err(e),
            },
        };
        if chosen.is_none() {
            let port = l.local_addr()?.port();
            *self.api_port.lock().unwrap_or_else(|e| e.into_inner()) = Some(port);
            let mut rt = self.kc.runtime.write().unwrap_or_else(|e| e.into_inner());
            rt.instance_api_port = Some(port);
        }
        Ok(l)
    }

    /// Serve keycard's API on an instance's own listener.
    fn serve_api(&self, tasks: &mut Vec<JoinHandle<()>>, l: TcpListener, id: &str, ip: &str) {
        let (Some(api), Ok(private_ip)) = (&self.opts.api, ip.parse()) else {
            return;
        };
        let api = api.clone();
        let path = NetworkPath {
            instance_id: id.to_string(),
            private_ip,
        };
        tasks.push(tokio::spawn(async move { api(l, Some(path)) }));
    }

    async fn open_netns(&self, id: &str, addr: Ipv4Addr, ip: &str) -> std::io::Result<Live> {
        let name = netns::name(&self.kc, id);
        netns::create(&name, ip).await?;
        let n = name.clone();
        let api_port = self.opts.api_port;
        let (imds_l, api_l) = tokio::task::spawn_blocking(move || {
            let imds = netns::bind_in(&n, SocketAddr::from(([169, 254, 169, 254], 80)))?;
            let api = netns::bind_in(&n, SocketAddr::from(([127, 0, 0, 1], api_port)))?;
            Ok::<_, std::io::Error>((imds, api))
        })
        .await
        .map_err(std::io::Error::other)??;
        let mut tasks = vec![tokio::spawn(serve_imds(
            self.kc.clone(),
            TcpListener::from_std(imds_l)?,
            id.to_string(),
            ip.parse().ok(),
        ))];
        self.serve_api(&mut tasks, TcpListener::from_std(api_l)?, id, ip);
        Ok(Live {
            slot_addr: addr,
            // Inside its namespace the instance reaches the usual address.
            bound: Some(Ipv4Addr::new(169, 254, 169, 254)),
            tasks,
            netns: Some(name),
        })
    }

    /// The port the loopback listeners use (after the first bind).
    pub fn port(&self) -> u16 {
        *self.port.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether an instance's listeners are open.
    pub fn is_serving(&self, id: &str) -> bool {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(id)
    }
}

/// Accept loop of one instance's metadata listener. With `source`, only
/// connections from that address are answered (netns mode).
async fn serve_imds(
    kc: Arc<Keycard>,
    l: TcpListener,
    id: String,
    source: Option<std::net::IpAddr>,
) {
    loop {
        let (stream, peer) = match l.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(instance = %id, error = %e, "imds accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if source.is_some_and(|s| s != peer.ip()) {
            tracing::warn!(instance = %id, peer = %peer, "imds connection from a foreign address refused");
            continue;
        }
        // The hop limit: responses leave with this IP TTL, so a caller
        // more hops away (a container behind a bridge) never sees them.
        let hop = kc
            .state()
            .instances
            .get(&id)
            .map(|i| i.metadata.hop_limit)
            .unwrap_or(1);
        let _ = stream.set_ttl(u32::from(hop));
        let _ = stream.set_nodelay(true);
        let kc = kc.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<Incoming>| {
                let (kc, id) = (kc.clone(), id.clone());
                async move {
                    // Credentials are answered only once their issue is in
                    // the audit trail.
                    let r = keycard_services::delivery::delivered(|| {
                        handler::respond(
                            &kc,
                            &id,
                            req.method(),
                            req.uri().path(),
                            req.headers(),
                            keycard_services::now(),
                        )
                    })
                    .await
                    .unwrap_or_else(|_| handler::unavailable());
                    Ok::<_, Infallible>(r)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(stream), svc);
            let _ = conn.await;
        });
    }
}
