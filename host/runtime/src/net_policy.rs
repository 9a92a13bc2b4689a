//! Where a plugin granted `network` may connect. The public internet is open to it; loopback,
//! private, link-local and other special ranges are closed unless the operator grants a range
//! for that plugin (`[plugins.network]`), so a plugin cannot reach the server's own port, a
//! database on localhost, the LAN or a cloud metadata service (169.254.169.254) by default.
//! No plugin may listen for connections. The check runs on every resolved address at connect
//! or send time, so a name that resolves to a closed address (DNS rebinding) is refused too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use wasmtime_wasi::sockets::SocketAddrUse;

/// Whether a plugin with `grants` may use `addr` as `use_` says.
pub(crate) fn allowed(addr: SocketAddr, use_: SocketAddrUse, grants: &[IpNet]) -> bool {
    match use_ {
        // Implicit binds (before a connect or a send) pass the wildcard address; binding to
        // a particular local address, listening and accepting make the plugin a server.
        SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => addr.ip().is_unspecified(),
        SocketAddrUse::TcpListen | SocketAddrUse::TcpAccept => false,
        SocketAddrUse::TcpConnect | SocketAddrUse::UdpSend | SocketAddrUse::UdpReceive => {
            let ip = addr.ip();
            grants.iter().any(|g| g.contains(&ip)) || is_public(ip)
        }
    }
}

/// The check wasmtime-wasi runs, for a plugin with `grants`.
pub(crate) fn check(
    plugin: Arc<str>,
    grants: Arc<[IpNet]>,
) -> impl Fn(
    SocketAddr,
    SocketAddrUse,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + Sync>>
+ Send
+ Sync
+ 'static {
    move |addr, use_| {
        let ok = allowed(addr, use_, &grants);
        if !ok {
            tracing::info!(plugin = %plugin, %addr, ?use_, "network use refused by the address policy ([plugins.network] grants ranges)");
        }
        Box::pin(std::future::ready(ok))
    }
}

/// Whether `ip` is an ordinary address on the public internet.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || a == 0 // "this network"
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16: cloud metadata services live here
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || ip.is_documentation()
        || ip.is_multicast()
        || a >= 240) // reserved, and broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., hi, lo] = s;
        return is_public_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || ip.is_unique_local() // fc00::/7
        || ip.is_unicast_link_local() // fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated, still routed by some)
        || s[0] == 0x2001 && s[1] == 0xdb8) // documentation
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(addr: &str, grants: &[&str]) -> bool {
        let grants: Vec<IpNet> = grants.iter().map(|g| g.parse().unwrap()).collect();
        allowed(addr.parse().unwrap(), SocketAddrUse::TcpConnect, &grants)
    }

    #[test]
    fn closed_ranges_are_closed_and_public_ones_open() {
        for closed in [
            "127.0.0.1:80",
            "10.1.2.3:80",
            "172.16.0.1:80",
            "192.168.1.1:80",
            "169.254.169.254:80",
            "100.64.0.1:80",
            "0.0.0.0:80",
            "255.255.255.255:80",
            "224.0.0.1:80",
            "[::1]:80",
            "[::]:80",
            "[fd00::1]:80",
            "[fe80::1]:80",
            "[::ffff:127.0.0.1]:80",
            "[::ffff:10.0.0.1]:80",
            "[64:ff9b::a9fe:a9fe]:80",
        ] {
            assert!(!connect(closed, &[]), "{closed} is open");
        }
        for open in [
            "93.184.216.34:443",
            "1.1.1.1:53",
            "[2606:4700::1111]:443",
            "[::ffff:8.8.8.8]:53",
        ] {
            assert!(connect(open, &[]), "{open} is closed");
        }
    }

    #[test]
    fn a_grant_opens_its_range_only() {
        assert!(connect("127.0.0.1:5432", &["127.0.0.1/32"]));
        assert!(connect("192.168.1.20:80", &["192.168.1.0/24"]));
        assert!(!connect("192.168.2.20:80", &["192.168.1.0/24"]));
        assert!(!connect("[::1]:80", &["127.0.0.1/32"]));
    }

    #[test]
    fn a_plugin_binds_only_implicitly_and_never_listens() {
        let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let grants = ["127.0.0.0/8".parse().unwrap()];
        assert!(allowed(any, SocketAddrUse::TcpBind, &grants));
        assert!(allowed(any, SocketAddrUse::UdpBind, &grants));
        assert!(!allowed(local, SocketAddrUse::TcpBind, &grants));
        assert!(!allowed(any, SocketAddrUse::TcpListen, &grants));
        assert!(!allowed(local, SocketAddrUse::TcpAccept, &grants));
    }
}
