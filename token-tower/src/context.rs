//! The audit context of a request: client IP, user agent, request id.

use std::net::SocketAddr;

use http::HeaderName;
use http::header::USER_AGENT;
use http::request::Parts;
use token_core::Context;

use crate::{BearerAuth, ClientAddr, Config};

fn header_text(request: &Parts, name: &HeaderName) -> Option<String> {
    request
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// An address as proxies write it: `203.0.113.7`, `203.0.113.7:51234`, `2001:db8::1`,
/// `[2001:db8::1]:443`.
fn forwarded_ip(entry: &str) -> Option<std::net::IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<std::net::IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

fn client_ip(config: &Config, request: &Parts) -> Option<String> {
    if let Some(header) = &config.client_ip_header
        && let Some(line) = request.headers.get_all(header).iter().next_back()
    {
        // The last entry of the last header line is the one the nearest (trusted) proxy
        // appended; earlier entries and lines may come from the client. A header that is
        // there but unreadable gives no address at all rather than the proxy's own (the
        // connection's), so a network allowlist fails closed.
        return line
            .to_str()
            .ok()
            .and_then(|v| v.rsplit(',').next())
            .and_then(forwarded_ip)
            .map(|ip| ip.to_string());
    }
    if let Some(ClientAddr(addr)) = request.extensions.get::<ClientAddr>() {
        return Some(addr.ip().to_string());
    }
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) = request
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(addr.ip().to_string());
    }
    None
}

/// The caller's context as this configuration reads it from a request.
pub(crate) fn context_of(config: &Config, request: &Parts) -> Context {
    let mut ctx = Context::new();
    if let Some(ip) = client_ip(config, request) {
        ctx = ctx.client_ip(ip);
    }
    if let Some(ua) = header_text(request, &USER_AGENT) {
        ctx = ctx.user_agent(ua);
    }
    if let Some(id) = header_text(request, &config.request_id_header) {
        ctx = ctx.request_id(id);
    }
    ctx
}

impl BearerAuth {
    /// The audit [`Context`] this configuration derives from a request (client IP, user agent,
    /// request id), for handlers that call the manager themselves.
    pub fn context_of(&self, request: &Parts) -> Context {
        context_of(&self.config, request)
    }
}
