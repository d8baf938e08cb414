//! [`NetworkAllowlist`]: the networks (CIDR blocks, IPv4 and IPv6) a token may be used from.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Most networks in one allowlist.
pub const ALLOWLIST_MAX_NETWORKS: usize = 64;

/// The networks a token may be used from: a non-empty set of CIDR blocks (`10.0.0.0/8`,
/// `2001:db8::/32`; a bare address means that one host), kept in canonical form (host bits
/// cleared, sorted, without blocks another one contains).
///
/// A token with an allowlist validates only when the caller's address (the
/// [`Context`](crate::Context)'s `client_ip`, which token-tower fills from the peer or the
/// trusted proxy's forwarded address) lies in one of the blocks; without an address it is
/// refused. Derived tokens and updates can only narrow it.
///
/// ```
/// use token_core::NetworkAllowlist;
///
/// let runners: NetworkAllowlist = "10.20.0.0/16 2001:db8:1::/48".parse()?;
/// assert!(runners.permits("10.20.3.4".parse()?));
/// assert!(!runners.permits("10.21.0.1".parse()?));
/// assert!(runners.permits("2001:db8:1::7".parse()?));
/// let one_rack: NetworkAllowlist = "10.20.5.0/24".parse()?;
/// assert!(runners.covers(&one_rack)); // narrower: allowed for a derived token
/// assert_eq!("10.20.5.9/24".parse::<NetworkAllowlist>()?.to_string(), "10.20.5.0/24");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct NetworkAllowlist(Vec<IpNet>);

/// Why a text is not a [`NetworkAllowlist`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// Not a CIDR block or address.
    #[error(
        "{text:?} is not a network: write a CIDR block such as 10.0.0.0/8 or 2001:db8::/32, or an address"
    )]
    Invalid {
        /// The text.
        text: String,
    },
    /// No networks: a token that may be used from nowhere is a revoked token; revoke it.
    #[error("an allowlist needs at least one network")]
    Empty,
    /// More than [`ALLOWLIST_MAX_NETWORKS`].
    #[error("an allowlist has at most {ALLOWLIST_MAX_NETWORKS} networks, found {count}")]
    TooMany {
        /// How many were given.
        count: usize,
    },
}

impl NetworkAllowlist {
    /// Parses space- or comma-separated CIDR blocks or addresses.
    pub fn parse(text: &str) -> Result<Self, NetworkError> {
        Self::from_networks(
            text.split(|c: char| c.is_ascii_whitespace() || c == ',')
                .filter(|part| !part.is_empty()),
        )
    }

    /// An allowlist of these blocks or addresses.
    pub fn from_networks<S: AsRef<str>>(
        networks: impl IntoIterator<Item = S>,
    ) -> Result<Self, NetworkError> {
        let nets = networks
            .into_iter()
            .map(|text| parse_net(text.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_nets(nets)
    }

    fn from_nets(nets: Vec<IpNet>) -> Result<Self, NetworkError> {
        if nets.len() > ALLOWLIST_MAX_NETWORKS {
            return Err(NetworkError::TooMany { count: nets.len() });
        }
        if nets.is_empty() {
            return Err(NetworkError::Empty);
        }
        // Canonical: host bits cleared, contained blocks dropped, sorted.
        Ok(Self(IpNet::aggregate(&nets)))
    }

    /// Whether `address` lies in one of the networks (an IPv4-mapped IPv6 address counts as its
    /// IPv4 address).
    pub fn permits(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&address))
    }

    /// Whether every network of `other` lies within one of these: `other` is no wider.
    pub fn covers(&self, other: &NetworkAllowlist) -> bool {
        other
            .0
            .iter()
            .all(|theirs| self.0.iter().any(|mine| mine.contains(theirs)))
    }

    /// The networks of both lists: every block of one that lies within a block of the other.
    /// `None` when they share no address (a token narrowed to that may be used from nowhere).
    pub fn intersection(&self, other: &NetworkAllowlist) -> Option<NetworkAllowlist> {
        let within = |nets: &[IpNet], outer: &[IpNet]| -> Vec<IpNet> {
            nets.iter()
                .filter(|n| outer.iter().any(|o| o.contains(*n)))
                .copied()
                .collect()
        };
        let mut both = within(&self.0, &other.0);
        both.extend(within(&other.0, &self.0));
        Self::from_nets(both).ok()
    }

    /// The networks, canonical and sorted.
    pub fn networks(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().map(ToString::to_string)
    }
}

fn parse_net(text: &str) -> Result<IpNet, NetworkError> {
    let invalid = || NetworkError::Invalid {
        text: text.chars().take(64).collect(),
    };
    if text.contains('/') {
        IpNet::from_str(text)
            .map(|n| n.trunc())
            .map_err(|_| invalid())
    } else {
        IpAddr::from_str(text)
            .map(IpNet::from)
            .map_err(|_| invalid())
    }
}

impl FromStr for NetworkAllowlist {
    type Err = NetworkError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for NetworkAllowlist {
    /// Space-separated canonical blocks (as stored).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for NetworkAllowlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NetworkAllowlist({self})")
    }
}

impl TryFrom<Vec<String>> for NetworkAllowlist {
    type Error = NetworkError;
    fn try_from(networks: Vec<String>) -> Result<Self, Self::Error> {
        Self::from_networks(networks)
    }
}

impl From<NetworkAllowlist> for Vec<String> {
    fn from(list: NetworkAllowlist) -> Self {
        list.networks().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> NetworkAllowlist {
        NetworkAllowlist::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn v4_and_v6_match_and_mismatch() {
        let l = list("192.0.2.0/24, 2001:db8::/32 198.51.100.7");
        assert!(l.permits(ip("192.0.2.255")));
        assert!(!l.permits(ip("192.0.3.0")));
        assert!(l.permits(ip("198.51.100.7")));
        assert!(!l.permits(ip("198.51.100.8")));
        assert!(l.permits(ip("2001:db8:ffff::1")));
        assert!(!l.permits(ip("2001:db9::1")));
        assert!(l.permits(ip("::ffff:192.0.2.1")), "IPv4-mapped IPv6");
    }

    #[test]
    fn canonical_form_and_refusals() {
        assert_eq!(
            list("10.1.2.3/8 10.9.0.0/16 ::1").to_string(),
            "10.0.0.0/8 ::1/128"
        );
        assert_eq!(NetworkAllowlist::parse(" "), Err(NetworkError::Empty));
        assert!(matches!(
            NetworkAllowlist::parse("10.0.0.0/33"),
            Err(NetworkError::Invalid { .. })
        ));
        assert!(matches!(
            NetworkAllowlist::parse("example.com"),
            Err(NetworkError::Invalid { .. })
        ));
        let many: Vec<String> = (0..=ALLOWLIST_MAX_NETWORKS)
            .map(|i| format!("10.0.{i}.1"))
            .collect();
        assert!(matches!(
            NetworkAllowlist::from_networks(many),
            Err(NetworkError::TooMany { .. })
        ));
    }

    #[test]
    fn covers_and_intersection_only_narrow() {
        let wide = list("10.0.0.0/8 192.0.2.0/24");
        let narrow = list("10.1.0.0/16");
        assert!(wide.covers(&narrow));
        assert!(!narrow.covers(&wide));
        assert_eq!(wide.intersection(&narrow), Some(narrow.clone()));
        assert_eq!(
            list("10.1.0.0/16 172.16.0.0/12").intersection(&wide),
            Some(narrow)
        );
        assert_eq!(list("172.16.0.0/12").intersection(&wide), None);
    }
}
