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
            let segments = v6.segments();
            let first = segments[0];
            // ::/96 (IPv4-compatible, deprecated) embeds an IPv4 address; refuse it whole.
            if segments[..6].iter().all(|s| *s == 0) {
                return true;
            }
            // 2002::/16 (6to4) routes to the IPv4 address in its next 32 bits.
            if first == 0x2002 {
                let [a, b] = segments[1].to_be_bytes();
                let [c, d] = segments[2].to_be_bytes();
                return is_forbidden_v4(Ipv4Addr::new(a, b, c, d));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fc00::/7 unique local, fe80::/10 link-local, fec0::/10 site-local
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                // 64:ff9b::/96 NAT64 can reach any IPv4 address, private ones included.
                || (first == 0x0064 && segments[1] == 0xff9b)
                // 2001:db8::/32 documentation, 100::/64 discard-only.
                || (first == 0x2001 && segments[1] == 0x0db8)
                || (first == 0x0100 && segments[1..4] == [0, 0, 0])
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

/// The longest receiver address accepted; every payload repeats it.
pub const MAX_ADDRESS_CHARS: usize = 2048;

/// Parses and checks a webhook address. Host names pass here and are checked again
/// on their resolved addresses when connecting; IP literals are checked now, and so is
/// anything a resolver would read as an IPv4 address (`2130706433`, `0x7f.1`,
/// `0177.0.0.1`, `127.1`), which must be written as four decimal numbers. Credentials in
/// the address, ports outside 1–65535 and `localhost.` with a trailing dot are refused.
pub fn check_address(address: &str, allow_private: bool) -> Result<Target, TargetError> {
    if address.len() > MAX_ADDRESS_CHARS {
        return Err(TargetError::Invalid(format!(
            "the address is longer than {MAX_ADDRESS_CHARS} characters"
        )));
    }
    let uri: hyper::Uri = address
        .parse()
        .map_err(|_| TargetError::Invalid(format!("not a valid URL: {:?}", truncated(address))))?;
    let scheme = match uri.scheme_str() {
        Some("http") => "http",
        Some("https") => "https",
        _ => {
            return Err(TargetError::Invalid(format!(
                "the address must start with http:// or https://, got {:?}",
                truncated(address)
            )))
        }
    };
    let no_host = || TargetError::Invalid(format!("the address has no host: {address:?}"));
    let authority = uri.authority().ok_or_else(no_host)?.as_str();

    // user:password@ is kept in plain text and shown back; and it is a classic way to
    // make one URL mean different hosts to different parsers.
    if authority.contains('@') {
        return Err(TargetError::Invalid(
            "the address must not contain a user name or password; \
             sign with the webhook's secret instead"
                .into(),
        ));
    }

    let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(no_host)?;
    let port = match &authority[host.len()..] {
        "" => {
            if scheme == "https" {
                443
            } else {
                80
            }
        }
        rest => parse_port(rest)
            .ok_or_else(|| TargetError::Invalid(format!("the address has a bad port: {rest:?}")))?,
    };
    let host = check_host(host)?;

    if !allow_private {
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        let local_name = name == "localhost" || name.ends_with(".localhost");
        let literal = host.parse::<IpAddr>().ok();
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

/// `:PORT` after the host: one to five digits making 1–65535.
fn parse_port(rest: &str) -> Option<u16> {
    let digits = rest.strip_prefix(':')?;
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u16>().ok().filter(|port| *port != 0)
}

/// The host without IPv6 brackets. An IPv6 literal must be one (no zone id); a host whose
/// last label is a number is an IPv4 address to resolvers and browsers alike, so it must
/// be one in its plain dotted-decimal form; a name must fit DNS's limits.
fn check_host(host: &str) -> Result<String, TargetError> {
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').unwrap_or(inner);
        return match inner.parse::<std::net::Ipv6Addr>() {
            Ok(_) => Ok(inner.to_string()),
            Err(_) => Err(TargetError::Invalid(format!(
                "not an IPv6 address: [{inner}]"
            ))),
        };
    }

    let name = host.strip_suffix('.').unwrap_or(host);
    let last = name.rsplit('.').next().unwrap_or("");
    if ends_in_number(last) {
        return match host.parse::<Ipv4Addr>() {
            Ok(_) => Ok(host.to_string()),
            Err(_) => Err(TargetError::Invalid(format!(
                "write an IPv4 address as four decimal numbers, not {host:?}"
            ))),
        };
    }

    let labels_fit = name.split('.').all(|label| (1..=63).contains(&label.len()));
    if name.len() > 253 || !labels_fit || host.contains('%') {
        return Err(TargetError::Invalid(format!(
            "not a valid host name: {:?}",
            truncated(host)
        )));
    }
    Ok(host.to_string())
}

/// True for a label that URL parsers read as a number: decimal digits, or `0x` and hex.
fn ends_in_number(label: &str) -> bool {
    let hex = label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"));
    match hex {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// The first 100 characters of a caller's text, for an error message.
fn truncated(text: &str) -> String {
    match text.char_indices().nth(100) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
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

    #[test]
    fn refuses_ipv4_spellings_credentials_and_bad_ports() {
        for address in [
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://127.0.0.1./",
            "http://0/",
            "http://93.184.216.34./",
            "http://example.123/",
            "http://user:pass@example.org/",
            "http://@example.org/",
            "http://example.org:0/",
            "http://example.org:65536/",
            "http://example.org:+80/",
            "http://example.org:/",
            "http://[fe80::1%25eth0]/",
        ] {
            assert!(
                matches!(check_address(address, true), Err(TargetError::Invalid(_))),
                "{address} must be invalid"
            );
        }
        for address in [
            "http://localhost./",
            "http://a.LOCALHOST./",
            "http://[::7f00:1]/",
        ] {
            assert!(
                matches!(
                    check_address(address, false),
                    Err(TargetError::Forbidden(_))
                ),
                "{address} must be forbidden"
            );
        }
        assert!(is_forbidden("2002:c0a8:101::1".parse().unwrap()));
        assert!(!is_forbidden("2002:5db8:d822::1".parse().unwrap()));
        let t = check_address("http://[2606:4700::1111]:8443/x", false).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("2606:4700::1111", 8443));
        assert_eq!(
            check_address("https://example.org.:65535/", false)
                .unwrap()
                .port,
            65535
        );
    }
}
