//! Which receiver addresses may be called. Loopback, private, link-local, shared,
//! unspecified, multicast and cloud-metadata ranges are refused unless the operator
//! allows private targets. Hostnames are checked on the address they resolve to, at
//! connect time, so DNS cannot smuggle a private address past the API's check.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not acceptable as a webhook target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    /// Not an http:// or https:// URL with a host.
    Invalid(String),
    /// The host is, or resolves to, a refused address range.
    Forbidden(String),
}

impl std::fmt::Display for TargetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetError::Invalid(why) | TargetError::Forbidden(why) => f.write_str(why),
        }
    }
}

/// True when `ip` is in a range refused by default.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_forbidden_v4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fc00::/7 unique local, fe80::/10 link-local, fec0::/10 site-local
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                // 64:ff9b::/96 NAT64 can reach any IPv4 address, private ones included.
                || (first == 0x0064 && v6.segments()[1] == 0xff9b)
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        }
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // 100.64.0.0/10 shared address space (carrier-grade NAT).
        || (a == 100 && (64..128).contains(&b))
        // 192.0.0.0/24 protocol assignments, 198.18.0.0/15 benchmarking, 240.0.0.0/4.
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240
}

/// The parts of a target URL the client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http` or `https`.
    pub scheme: String,
    /// Host name or IP literal, without brackets.
    pub host: String,
    /// Explicit or default port.
    pub port: u16,
}

impl Target {
    /// The destination key for rate limits and concurrency caps: scheme, host, port.
    pub fn origin(&self) -> String {
        format!("{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// Parses and checks a webhook address. Host names pass here and are checked again
/// on their resolved addresses when connecting; IP literals are checked now.
pub fn check_address(address: &str, allow_private: bool) -> Result<Target, TargetError> {
    let uri: hyper::Uri = address
        .parse()
        .map_err(|_| TargetError::Invalid(format!("not a valid URL: {address:?}")))?;
    let scheme = match uri.scheme_str() {
        Some("http") => "http",
        Some("https") => "https",
        _ => {
            return Err(TargetError::Invalid(format!(
                "the address must start with http:// or https://, got {address:?}"
            )))
        }
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| TargetError::Invalid(format!("the address has no host: {address:?}")))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    if !allow_private {
        let literal = host.parse::<IpAddr>().ok();
        let local_name = host.eq_ignore_ascii_case("localhost")
            || host.to_ascii_lowercase().ends_with(".localhost");
        if local_name || literal.is_some_and(is_forbidden) {
            return Err(TargetError::Forbidden(format!(
                "the address {host} is on a loopback, private or link-local network, \
                 which this service does not call"
            )));
        }
    }
    Ok(Target {
        scheme: scheme.to_string(),
        host,
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_private_ranges() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(is_forbidden(ip.parse().unwrap()), "{ip} must be refused");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(!is_forbidden(ip.parse().unwrap()), "{ip} must be allowed");
        }
    }

    #[test]
    fn checks_addresses() {
        let t = check_address("https://hooks.example.org/x", false).unwrap();
        assert_eq!(t.origin(), "https://hooks.example.org:443");
        assert!(matches!(
            check_address("http://127.0.0.1:9/x", false),
            Err(TargetError::Forbidden(_))
        ));
        assert!(matches!(
            check_address("http://[::1]/", false),
            Err(TargetError::Forbidden(_))
        ));
        assert!(matches!(
            check_address("http://localhost/", false),
            Err(TargetError::Forbidden(_))
        ));
        assert_eq!(check_address("http://127.0.0.1:9/x", true).unwrap().port, 9);
        assert!(matches!(
            check_address("ftp://example.org/", true),
            Err(TargetError::Invalid(_))
        ));
        assert!(matches!(
            check_address("not a url", true),
            Err(TargetError::Invalid(_))
        ));
    }
}
