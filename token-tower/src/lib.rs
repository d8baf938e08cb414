//! # token-tower
//!
//! A tower [`Layer`] that authenticates requests with `Authorization: Bearer <token>` through a
//! [`TokenManager`], and (with the `axum` feature) an extractor for the validated identity.
//!
//! ```
//! use axum::{Router, routing::get};
//! use token_core::{HashKey, KeyId, Keyring, TokenManager};
//! use token_store_memory::MemoryStore;
//! use token_tower::{Authenticated, BearerAuth};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = TokenManager::builder(MemoryStore::new(), Keyring::new(HashKey::generate(KeyId::new(1))?))
//!     .build()?;
//! let auth = BearerAuth::new(manager).realm("widgets");
//! let app: Router = Router::new()
//!     .route("/widgets", get(|who: Authenticated| async move { format!("hello {}", who.subject()) }))
//!     .route_layer(auth.require("widgets:read")?);
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! ## Responses (RFC 6750)
//!
//! | situation | status | `WWW-Authenticate` |
//! |---|---|---|
//! | no `Authorization` header, or another scheme (`Basic`) | 401 | `Bearer realm="…"` (no error code) |
//! | malformed header (empty, no token, not a `b64token`, `Bearer` run into the token as in `Bearertok` or `Bearer,tok`, non-ASCII), two `Authorization` headers, `access_token` in the query string (however percent-encoded) | 400 | `Bearer realm="…", error="invalid_request"` |
//! | malformed, unknown, wrong secret, revoked, expired, idle, used up | 401 | `Bearer realm="…", error="invalid_token"` |
//! | valid token without the required scopes | 403 (401 on a layer built with [`insufficient_scope_as_401`](BearerAuthLayer::insufficient_scope_as_401), for introspection endpoints: RFC 7662 §2.3) | `Bearer realm="…", error="insufficient_scope", scope="<required>"` |
//! | the store failed (validation fails closed) | 503 | none |
//!
//! Every `invalid_token` response is byte-identical, so a client cannot tell an unknown token from a
//! revoked or expired one. Tokens in query strings are refused (RFC 6750 §2.3 is optional and leaks
//! tokens into logs and history). Error responses carry `Cache-Control: no-store` and an empty body.
//!
//! ## Audit context
//!
//! The caller's context flows into audit events: the client IP comes from a header you trust
//! ([`BearerAuth::trust_client_ip_header`], e.g. `x-forwarded-for` set by your proxy; the last
//! comma-separated entry is used, the one your nearest proxy appended), else from a [`ClientAddr`]
//! extension, else (with the `axum` feature) from `ConnectInfo<SocketAddr>`. The user agent and the
//! request id (`x-request-id` by default) are copied too. The `Authorization` header is marked
//! sensitive before the inner service sees it, so layers *inside* this one (e.g. `tower-http`'s
//! `TraceLayer` applied per route) never log it. Layers outside it see the request first: put
//! `tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer` outermost in your stack.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use http::header::{
    AUTHORIZATION, CACHE_CONTROL, HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT,
    WWW_AUTHENTICATE,
};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use token_core::{Context, ErrorClass, Scope, ScopeError, TokenManager, ValidatedToken};
use tower_layer::Layer;
use tower_service::Service;

/// The validated identity, placed in request extensions by the layer.
///
/// With the `axum` feature it is also an extractor; a handler behind no layer gets a 500, because
/// that is a server misconfiguration, not a client error.
#[derive(Debug, Clone)]
pub struct Authenticated(pub ValidatedToken);

impl Deref for Authenticated {
    type Target = ValidatedToken;
    fn deref(&self) -> &ValidatedToken {
        &self.0
    }
}

/// The peer address of a request, for servers that are not axum (insert it as an extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// A required scope was invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequirementError {
    /// Not a valid scope.
    Scope(ScopeError),
    /// Contains `*`; requirements name concrete actions.
    Wildcard(Scope),
}

impl fmt::Display for RequirementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scope(e) => write!(f, "invalid required scope: {e}"),
            Self::Wildcard(s) => write!(
                f,
                "required scope {s} contains '*'; requirements must be concrete (e.g. widgets:read)"
            ),
        }
    }
}

impl std::error::Error for RequirementError {}

struct Config {
    manager: TokenManager,
    realm: String,
    client_ip_header: Option<HeaderName>,
    request_id_header: HeaderName,
}

/// Configuration shared by every layer built from it. Cheap to clone.
///
/// ```
/// use token_core::{HashKey, KeyId, Keyring, TokenManager};
/// use token_store_memory::MemoryStore;
/// use token_tower::BearerAuth;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let manager = TokenManager::builder(MemoryStore::new(), Keyring::new(HashKey::generate(KeyId::new(1))?))
///     .build()?;
/// let auth = BearerAuth::new(manager)
///     .realm("acme")
///     .trust_client_ip_header(http::HeaderName::from_static("x-forwarded-for"));
/// let any_valid_token = auth.layer();
/// let writers_only = auth.require("widgets:write")?;
/// # let _ = (any_valid_token, writers_only);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct BearerAuth {
    config: Arc<Config>,
}

impl fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuth")
            .field("realm", &self.config.realm)
            .field("client_ip_header", &self.config.client_ip_header)
            .field("request_id_header", &self.config.request_id_header)
            .finish_non_exhaustive()
    }
}

impl BearerAuth {
    /// Authentication through `manager`, realm `api`, no trusted IP header, request ids from
    /// `x-request-id`.
    pub fn new(manager: TokenManager) -> Self {
        Self {
            config: Arc::new(Config {
                manager,
                realm: "api".to_owned(),
                client_ip_header: None,
                request_id_header: HeaderName::from_static("x-request-id"),
            }),
        }
    }

    fn edit(mut self, change: impl FnOnce(&mut Config)) -> Self {
        match Arc::get_mut(&mut self.config) {
            Some(config) => change(config),
            None => {
                let mut config = Config {
                    manager: self.config.manager.clone(),
                    realm: self.config.realm.clone(),
                    client_ip_header: self.config.client_ip_header.clone(),
                    request_id_header: self.config.request_id_header.clone(),
                };
                change(&mut config);
                self.config = Arc::new(config);
            }
        }
        self
    }

    /// The realm named in `WWW-Authenticate` challenges. Quotes and backslashes are escaped.
    pub fn realm(self, realm: &str) -> Self {
        let realm = realm.to_owned();
        self.edit(|c| c.realm = realm)
    }

    /// Takes the client IP from this header (set it only if a proxy you control always sets or
    /// overwrites it; clients can forge it otherwise).
    pub fn trust_client_ip_header(self, header: HeaderName) -> Self {
        self.edit(|c| c.client_ip_header = Some(header))
    }

    /// Takes the request id from this header (default `x-request-id`).
    pub fn request_id_header(self, header: HeaderName) -> Self {
        self.edit(|c| c.request_id_header = header)
    }

    /// A layer that accepts any valid token.
    pub fn layer(&self) -> BearerAuthLayer {
        BearerAuthLayer {
            config: Arc::clone(&self.config),
            required: Arc::from(Vec::new()),
            scope_status: StatusCode::FORBIDDEN,
        }
    }

    /// A layer that requires every scope in `scopes` (space-separated, concrete).
    pub fn require(&self, scopes: &str) -> Result<BearerAuthLayer, RequirementError> {
        let parsed = scopes
            .split_ascii_whitespace()
            .map(|s| s.parse::<Scope>().map_err(RequirementError::Scope))
            .collect::<Result<Vec<_>, _>>()?;
        self.require_scopes(parsed)
    }

    /// A layer that requires every scope in `scopes`.
    pub fn require_scopes(
        &self,
        scopes: impl IntoIterator<Item = Scope>,
    ) -> Result<BearerAuthLayer, RequirementError> {
        let required: Vec<Scope> = scopes.into_iter().collect();
        if let Some(wild) = required.iter().find(|s| !s.is_concrete()) {
            return Err(RequirementError::Wildcard(wild.clone()));
        }
        Ok(BearerAuthLayer {
            config: Arc::clone(&self.config),
            required: Arc::from(required),
            scope_status: StatusCode::FORBIDDEN,
        })
    }
}

/// The [`Layer`] built by [`BearerAuth`].
#[derive(Clone)]
pub struct BearerAuthLayer {
    config: Arc<Config>,
    required: Arc<[Scope]>,
    /// The status of an insufficient-scope answer: 403, or 401 for introspection endpoints.
    scope_status: StatusCode,
}

impl BearerAuthLayer {
    /// Answers a valid token that lacks the required scopes with `401 Unauthorized` instead of
    /// `403 Forbidden`, with the same `insufficient_scope` challenge naming the required scopes.
    ///
    /// For OAuth 2.0 token introspection endpoints: RFC 7662 §2.3 has the authorization server
    /// answer a bearer token that "does not contain sufficient privileges" with a 401 as described
    /// in RFC 6750 §3. Elsewhere keep the default 403 of RFC 6750 §3.1 (the token is valid; only
    /// a token with more scopes would help). The other answers do not change.
    ///
    /// ```
    /// use token_core::{HashKey, KeyId, Keyring, TokenManager};
    /// use token_store_memory::MemoryStore;
    /// use token_tower::BearerAuth;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = TokenManager::builder(MemoryStore::new(), Keyring::new(HashKey::generate(KeyId::new(1))?))
    ///     .build()?;
    /// let auth = BearerAuth::new(manager).realm("acme");
    /// // A token without tokens:introspect gets 401 and
    /// // `WWW-Authenticate: Bearer realm="acme", error="insufficient_scope", scope="tokens:introspect"`.
    /// let introspection = auth.require("tokens:introspect")?.insufficient_scope_as_401();
    /// assert!(format!("{introspection:?}").contains("401"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn insufficient_scope_as_401(mut self) -> Self {
        self.scope_status = StatusCode::UNAUTHORIZED;
        self
    }
}

impl fmt::Debug for BearerAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuthLayer")
            .field("realm", &self.config.realm)
            .field("required", &self.required)
            .field("insufficient_scope_status", &self.scope_status.as_u16())
            .finish()
    }
}

impl<S> Layer<S> for BearerAuthLayer {
    type Service = BearerAuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BearerAuthService {
            inner,
            config: Arc::clone(&self.config),
            required: Arc::clone(&self.required),
            scope_status: self.scope_status,
        }
    }
}

/// The [`Service`] produced by [`BearerAuthLayer`].
#[derive(Clone)]
pub struct BearerAuthService<S> {
    inner: S,
    config: Arc<Config>,
    required: Arc<[Scope]>,
    scope_status: StatusCode,
}

impl<S> fmt::Debug for BearerAuthService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuthService")
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BearerAuthService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The clone is the one that was not driven to readiness; keep the ready one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = Arc::clone(&self.config);
        let required = Arc::clone(&self.required);
        let scope_status = self.scope_status;
        if let Some(value) = request.headers_mut().get_mut(AUTHORIZATION) {
            value.set_sensitive(true);
        }
        // Only the head is borrowed across the validation await, so the body need not be Sync.
        let (mut parts, body) = request.into_parts();
        Box::pin(async move {
            match authenticate(&config, &required, &parts).await {
                Ok(identity) => {
                    parts.extensions.insert(Authenticated(identity));
                    inner.call(Request::from_parts(parts, body)).await
                }
                Err(rejection) => {
                    Ok(rejection.into_response(&config.realm, &required, scope_status))
                }
            }
        })
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rejection {
    NoCredentials,
    InvalidRequest,
    InvalidToken,
    InsufficientScope,
    Unavailable,
}

impl Rejection {
    fn into_response<B: Default>(
        self,
        realm: &str,
        required: &[Scope],
        scope_status: StatusCode,
    ) -> Response<B> {
        let realm = quote(realm);
        let (status, challenge) = match self {
            Self::NoCredentials => (
                StatusCode::UNAUTHORIZED,
                Some(format!("Bearer realm={realm}")),
            ),
            Self::InvalidRequest => (
                StatusCode::BAD_REQUEST,
                Some(format!("Bearer realm={realm}, error=\"invalid_request\"")),
            ),
            Self::InvalidToken => (
                StatusCode::UNAUTHORIZED,
                Some(format!("Bearer realm={realm}, error=\"invalid_token\"")),
            ),
            Self::InsufficientScope => {
                let scopes: Vec<&str> = required.iter().map(Scope::as_str).collect();
                (
                    scope_status,
                    Some(format!(
                        "Bearer realm={realm}, error=\"insufficient_scope\", scope={}",
                        quote(&scopes.join(" "))
                    )),
                )
            }
            Self::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, None),
        };
        let mut response = Response::new(B::default());
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// An RFC 7230 quoted-string; characters that cannot appear in a header are dropped.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {}
        }
    }
    out.push('"');
    out
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// Whether the query carries an `access_token` parameter, however its name is encoded
/// (`access%5Ftoken` too): such a request is refused rather than silently ignored.
fn query_has_access_token(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes()).any(|(name, _)| name == "access_token")
    })
}

/// The scheme starts with "Bearer" (any case) but is not exactly it: `Bearertok`, `Bearer,tok`,
/// `Bearer<TAB>tok`. A client attempting bearer authentication got the syntax wrong.
fn is_garbled_bearer(scheme: &str) -> bool {
    scheme.len() > 6 && scheme.as_bytes()[..6].eq_ignore_ascii_case(b"bearer")
}

/// Extracts the bearer token from the headers.
fn bearer_token(request: &Parts) -> Result<&str, Rejection> {
    if query_has_access_token(request.uri.query()) {
        return Err(Rejection::InvalidRequest);
    }
    let mut values = request.headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(Rejection::NoCredentials);
    };
    if values.next().is_some() {
        return Err(Rejection::InvalidRequest);
    }
    let value = value
        .to_str()
        .map_err(|_| Rejection::InvalidRequest)?
        .trim_matches([' ', '\t']);
    if value.is_empty() {
        return Err(Rejection::InvalidRequest);
    }
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if is_garbled_bearer(scheme) {
        return Err(Rejection::InvalidRequest);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Another scheme (or none): the client did not attempt bearer authentication.
        return Err(Rejection::NoCredentials);
    }
    let token = rest.trim_start_matches(' ');
    if !is_b64token(token) {
        return Err(Rejection::InvalidRequest);
    }
    Ok(token)
}

fn header_text(request: &Parts, name: &HeaderName) -> Option<String> {
    request
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn client_ip(config: &Config, request: &Parts) -> Option<String> {
    if let Some(header) = &config.client_ip_header {
        // The last entry of the last header line is the one the nearest (trusted) proxy
        // appended; earlier entries and lines may come from the client. Only an IP address is
        // accepted; anything else falls back to the connection address.
        let nearest = request
            .headers
            .get_all(header)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|s| s.trim().parse::<std::net::IpAddr>().ok());
        if let Some(ip) = nearest {
            return Some(ip.to_string());
        }
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
fn context_of(config: &Config, request: &Parts) -> Context {
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

async fn authenticate(
    config: &Config,
    required: &[Scope],
    request: &Parts,
) -> Result<ValidatedToken, Rejection> {
    let token = bearer_token(request)?;
    let ctx = context_of(config, request);
    config
        .manager
        .validate_with(token, required, &ctx)
        .await
        .map_err(|e| match e.class() {
            ErrorClass::InsufficientScope => Rejection::InsufficientScope,
            ErrorClass::InvalidToken => Rejection::InvalidToken,
            _ => Rejection::Unavailable,
        })
}

#[cfg(feature = "axum")]
mod extract {
    use axum::extract::FromRequestParts;
    use axum::response::{IntoResponse, Response};
    use http::StatusCode;
    use http::request::Parts;

    use crate::Authenticated;

    /// Rejection of the [`Authenticated`] extractor: the route has no `BearerAuthLayer`.
    #[derive(Debug, Clone, Copy)]
    pub struct MissingAuthLayer;

    impl IntoResponse for MissingAuthLayer {
        fn into_response(self) -> Response {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "route is missing token_tower::BearerAuthLayer",
            )
                .into_response()
        }
    }

    impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
        type Rejection = MissingAuthLayer;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Self, Self::Rejection> {
            parts
                .extensions
                .get::<Authenticated>()
                .cloned()
                .ok_or(MissingAuthLayer)
        }
    }
}

#[cfg(feature = "axum")]
pub use extract::MissingAuthLayer;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64token_grammar() {
        assert!(is_b64token("abc-._~+/=="));
        assert!(!is_b64token(""));
        assert!(!is_b64token("=="));
        assert!(!is_b64token("a b"));
        assert!(!is_b64token("a\"b"));
    }

    #[test]
    fn quoting_escapes_and_drops() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote("a\nb"), "\"ab\"");
    }

    #[test]
    fn query_detection_is_exact() {
        assert!(query_has_access_token(Some("a=1&access_token=x")));
        assert!(query_has_access_token(Some("access_token")));
        assert!(!query_has_access_token(Some("my_access_token=x")));
        assert!(!query_has_access_token(None));
    }
}
