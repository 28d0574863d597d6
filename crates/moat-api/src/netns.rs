//! Namespace-mode networks: a virtual network that is a Linux network namespace
//! (`/run/netns/<name>`, as `ip netns add` makes). moat binds its listeners *inside* the
//! namespace — a short-lived thread enters it, creates the socket, and hands the socket back; a
//! socket belongs for good to the namespace it was created in — so only processes in that
//! namespace can reach them. Endpoint addresses are put on the namespace's loopback interface
//! so that they are local there. Needs CAP_SYS_ADMIN and CAP_NET_ADMIN (root).

use std::net::{IpAddr, SocketAddr};
use std::process::Command;

fn ns_path(ns: &str) -> String {
    format!("/run/netns/{ns}")
}

/// Runs `make` on a short-lived thread that has entered network namespace `ns`; sockets it
/// creates belong to that namespace for good.
fn in_namespace<T: Send + 'static>(ns: &str, make: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> std::io::Result<T> {
    let path = ns_path(ns);
    let ns_name = ns.to_string();
    std::thread::spawn(move || -> std::io::Result<T> {
        let f = std::fs::File::open(&path).map_err(|e| {
            std::io::Error::new(e.kind(), format!("network namespace '{ns_name}' ({path}): {e}; create it with `ip netns add {ns_name}`"))
        })?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
            std::io::Error::other(format!("cannot enter network namespace '{ns_name}': {e} (moat needs root for namespace-mode networks)"))
        })?;
        make()
    })
    .join()
    .map_err(|_| std::io::Error::other("the namespace thread panicked"))?
}

/// Binds a TCP listener at `addr` inside network namespace `ns`.
pub fn bind_in(ns: &str, addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    in_namespace(ns, move || {
        let l = std::net::TcpListener::bind(addr)?;
        l.set_nonblocking(true)?;
        Ok(l)
    })
}

/// Binds a UDP socket at `addr` inside network namespace `ns`.
pub fn bind_udp_in(ns: &str, addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    in_namespace(ns, move || {
        let s = std::net::UdpSocket::bind(addr)?;
        s.set_nonblocking(true)?;
        Ok(s)
    })
}

fn ip(args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new("ip").args(args).output().map_err(|e| std::io::Error::new(e.kind(), format!("cannot run `ip` (iproute2): {e}")))
}

/// Brings up the namespace's loopback interface (`ip netns add` leaves it down).
pub fn loopback_up(ns: &str) -> std::io::Result<()> {
    let up = ip(&["-n", ns, "link", "set", "lo", "up"])?;
    if up.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("ip -n {ns} link set lo up: {}", String::from_utf8_lossy(&up.stderr).trim())))
    }
}

/// Makes `addr` local inside `ns` (on its loopback interface, which it brings up).
pub fn add_address(ns: &str, addr: IpAddr) -> std::io::Result<()> {
    let prefix = if addr.is_ipv4() { "32" } else { "128" };
    loopback_up(ns)?;
    let out = ip(&["-n", ns, "addr", "add", &format!("{addr}/{prefix}"), "dev", "lo"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || err.contains("File exists") {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("ip -n {ns} addr add {addr}/{prefix} dev lo: {}", err.trim())))
    }
}

/// Takes `addr` off the namespace's loopback interface again (best effort).
pub fn remove_address(ns: &str, addr: IpAddr) {
    let prefix = if addr.is_ipv4() { "32" } else { "128" };
    let _ = ip(&["-n", ns, "addr", "del", &format!("{addr}/{prefix}"), "dev", "lo"]);
}

/// Whether network namespace `ns` exists.
pub fn exists(ns: &str) -> bool {
    std::path::Path::new(&ns_path(ns)).exists()
}

/// Creates network namespace `ns` (`ip netns add`).
pub fn create(ns: &str) -> std::io::Result<()> {
    let out = ip(&["netns", "add", ns])?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("ip netns add {ns}: {}", String::from_utf8_lossy(&out.stderr).trim())))
    }
}

/// Deletes network namespace `ns` (best effort).
pub fn delete(ns: &str) {
    let _ = ip(&["netns", "del", ns]);
}
