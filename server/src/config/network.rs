//! Who may connect, and who the client is: the browser origins allowed to
//! open a Socket.IO connection ([`Origins`]), and the proxies whose
//! `X-Forwarded-For` is believed ([`TrustedProxies`]).

use std::net::IpAddr;

use super::ConfigError;
use super::source::{Lookup, Source};

/// Which browser origins may open a Socket.IO connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    /// Only the page's own origin (the `Origin` matches the `Host`).
    SameOrigin,
    /// The page's own origin and these (`scheme://host[:port]`).
    List(Vec<String>),
    /// Any origin (`*`).
    Any,
}

impl Origins {
    /// `HERALD_ALLOWED_ORIGINS`: `*`, a list of origins, or unset for the
    /// page's own.
    pub(super) fn read(src: &Source<impl Lookup>) -> Result<Self, ConfigError> {
        let origins = src.list("HERALD_ALLOWED_ORIGINS");
        if origins.iter().any(|o| o == "*") {
            return Ok(Origins::Any);
        }
        if origins.is_empty() {
            return Ok(Origins::SameOrigin);
        }
        if let Some(bad) = origins.iter().find(|origin| !valid_origin(origin)) {
            return Err(ConfigError::new(
                "HERALD_ALLOWED_ORIGINS",
                format!("{bad:?} is not an origin like https://chat.example.com or http://localhost:8080"),
            ));
        }
        Ok(Origins::List(origins))
    }
}

/// `scheme://host[:port]` with no path: what browsers send in `Origin`.
fn valid_origin(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else { return false };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

/// The load balancers and proxies whose `X-Forwarded-For` is believed, as
/// addresses or CIDR ranges. Empty: the TCP peer is the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut ranges = Vec::with_capacity(entries.len());
        for entry in entries {
            let (addr, prefix) = entry.split_once('/').map_or((entry.as_str(), None), |(a, p)| (a, Some(p)));
            let invalid = || format!("{entry:?} is not an IP address or a CIDR range like 10.0.0.0/8");
            let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => max,
                Some(p) => p.parse().ok().filter(|p| *p <= max).ok_or_else(invalid)?,
            };
            ranges.push((addr, prefix));
        }
        Ok(Self(ranges))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|(net, prefix)| match (net, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(*prefix)).unwrap_or(0);
                u32::from(*net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(*prefix)).unwrap_or(0);
                u128::from(*net) & mask == u128::from(ip) & mask
            }
            _ => false,
        })
    }

    /// The client's address: the TCP peer, unless that is a trusted proxy;
    /// then the nearest `X-Forwarded-For` hop that isn't one (a client can
    /// put anything on the left of that header, so it is read from the
    /// right).
    ///
    /// Every `X-Forwarded-For` line of `headers` counts, in order, as one
    /// list: a proxy that adds a line of its own (rather than appending to
    /// the client's) must not leave the client's line to be read as the
    /// nearest hop.
    pub fn client_ip_of(&self, peer: IpAddr, headers: &axum::http::HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let lines: Vec<&str> =
            headers.get_all("x-forwarded-for").iter().filter_map(|value| value.to_str().ok()).collect();
        self.client_ip(peer, Some(&lines.join(",")))
    }

    /// [`Self::client_ip_of`] with the header's lines already joined.
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let hops = forwarded_for.unwrap_or_default().split(',').map(str::trim).rev();
        let mut client = peer;
        for hop in hops {
            let Ok(ip) = hop.parse::<IpAddr>() else { break };
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        client
    }
}

/// An `http://` or `https://` URL with a host; refused without echoing it
/// (it may carry credentials).
pub(crate) fn http_url(key: &str, url: &str) -> Result<String, ConfigError> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') && !url.contains(char::is_whitespace) => {
            Ok(url.to_owned())
        }
        _ => Err(ConfigError::new(key, "expected an http:// or https:// URL, e.g. http://127.0.0.1:8080/herald")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into(), "::1".into()]).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(proxies.client_ip(ip("203.0.113.9"), Some("1.2.3.4")), ip("203.0.113.9"), "untrusted peer");
        assert_eq!(proxies.client_ip(ip("10.1.2.3"), Some("1.2.3.4")), ip("1.2.3.4"));
        assert_eq!(
            proxies.client_ip(ip("10.1.2.3"), Some("6.6.6.6, 1.2.3.4, 10.9.9.9")),
            ip("1.2.3.4"),
            "from the right"
        );
        assert_eq!(proxies.client_ip(ip("10.1.2.3"), None), ip("10.1.2.3"));
        assert_eq!(proxies.client_ip(ip("10.1.2.3"), Some("garbage")), ip("10.1.2.3"));
        assert_eq!(proxies.client_ip(ip("::1"), Some("2001:db8::1")), ip("2001:db8::1"));
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["proxy.local".into()]).is_err());
        assert!(TrustedProxies::parse(&["0.0.0.0/0".into()]).unwrap().contains(ip("8.8.8.8")));

        // A proxy that adds its own header line: the client's own line
        // (first) must not be taken for the nearest hop.
        let mut headers = axum::http::HeaderMap::new();
        headers.append("x-forwarded-for", "6.6.6.6".parse().unwrap());
        headers.append("x-forwarded-for", "1.2.3.4".parse().unwrap());
        assert_eq!(proxies.client_ip_of(ip("10.1.2.3"), &headers), ip("1.2.3.4"));
        assert_eq!(proxies.client_ip_of(ip("203.0.113.9"), &headers), ip("203.0.113.9"));
    }
}
