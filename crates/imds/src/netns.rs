//! `--instance-network netns`: one Linux network namespace per running
//! instance (`kc<tag>-i-…`), holding the instance's private address and
//! `169.254.169.254` (routed with the private address as source). keycard
//! binds the metadata listener and an API listener inside the namespace,
//! so a process there reaches only its own instance's IMDS and keycard's
//! API, at the addresses EC2 uses, with no environment at all; the IMDS
//! also checks that the caller's source address is the instance's.
//! Nothing else is reachable from the namespace. Needs root and iproute2.

use std::net::SocketAddr;
use std::os::fd::AsFd;

use keycard_services::Keycard;
use tokio::process::Command;

/// The namespace name of an instance: `kc<tag>-i-…`, where the tag is
/// derived from the server's master key, so two keycard servers on one
/// host never touch each other's namespaces.
pub fn name(kc: &Keycard, instance_id: &str) -> String {
    format!("{}{instance_id}", prefix(kc))
}

/// `kc<8 hex>-`: the prefix of every namespace this server owns.
pub fn prefix(kc: &Keycard) -> String {
    let tag = kc.mac("keycard netns tag v1", b"");
    let hex: String = tag[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("kc{hex}-")
}

async fn ip(args: &[&str]) -> std::io::Result<()> {
    let out = Command::new("ip").args(args).output().await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Create (or recreate) the namespace of an instance.
pub async fn create(ns: &str, private_ip: &str) -> std::io::Result<()> {
    let _ = ip(&["netns", "delete", ns]).await;
    ip(&["netns", "add", ns]).await?;
    let setup = async {
        ip(&["-n", ns, "link", "set", "lo", "up"]).await?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{private_ip}/32"),
            "dev",
            "lo",
        ])
        .await?;
        ip(&["-n", ns, "addr", "add", "169.254.169.254/32", "dev", "lo"]).await?;
        // Connections to the IMDS leave from the instance's private
        // address, which is how the IMDS tells its caller.
        let route = [
            "-n",
            ns,
            "route",
            "replace",
            "local",
            "169.254.169.254",
            "dev",
            "lo",
            "table",
            "local",
            "src",
            private_ip,
        ];
        ip(&route).await
    };
    if let Err(e) = setup.await {
        let _ = ip(&["netns", "delete", ns]).await;
        return Err(e);
    }
    Ok(())
}

pub async fn delete(ns: &str) {
    if let Err(e) = ip(&["netns", "delete", ns]).await {
        tracing::warn!(netns = ns, error = %e, "deleting namespace failed");
    }
}

/// Remove namespaces a previous run of this server left behind.
pub async fn cleanup_stale(prefix: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output().await else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let n = line.split_whitespace().next().unwrap_or("");
        if n.starts_with(prefix) {
            delete(n).await;
        }
    }
}

/// Bind a listener inside namespace `ns`. The socket belongs to the
/// namespace it was created in, so a short-lived thread enters the
/// namespace, binds, and exits; the process stays where it was.
pub fn bind_in(ns: &str, addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let f = std::fs::File::open(&path)?;
            nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            let l = std::net::TcpListener::bind(addr)?;
            l.set_nonblocking(true)?;
            Ok(l)
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("namespace thread panicked")))
    })
}

/// Whether this process can manage namespaces (root and `ip` present).
pub fn available() -> bool {
    nix::unistd::geteuid().is_root()
        && std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .is_ok_and(|o| o.status.success())
}
