//! # token-tower
//!
//! A tower [`Layer`] that authenticates requests with `Authorization: Bearer <token>` (and, if
//! enabled, an API key header) through a [`TokenManager`], and (with the `axum` feature)
//! extractors for the validated identity: [`Authenticated`], and `Option<Authenticated>` behind an
//! [optional](BearerAuthLayer::optional) layer.
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
//! ## Requirements
//!
//! | built with | a token passes if it permits |
//! |---|---|
//! | [`layer`](BearerAuth::layer) | nothing in particular (any valid token) |
//! | [`require("a b")`](BearerAuth::require), [`require_scopes`](BearerAuth::require_scopes) | every listed scope |
//! | [`require_any(["a", "b"])`](BearerAuth::require_any) | at least one listed scope |
//! | [`require_with(\|parts\| …)`](BearerAuth::require_with) | every scope the closure computes from the request head (e.g. `repo:acme/site:read` from the path); a closure that fails, or computes a scope with `*`, answers 400 `invalid_request` |
//!
//! Any of these can be made [optional](BearerAuthLayer::optional): a request without any
//! credential passes with no identity; one with a credential is checked as usual, so an invalid
//! token is still a 401 and never quietly treated as anonymous.
//!
//! ## Credentials
//!
//! `Authorization: Bearer <token>` always. [`BearerAuth::api_key_header`] also accepts the token
//! as the whole value of `x-api-key` ([`api_key_header_named`](BearerAuth::api_key_header_named)
//! for another name); it is off by default, so a deployment only accepts what it opted into. A
//! request carries exactly one credential: both headers, either header twice, or an
//! `access_token` query parameter is a 400. Challenges stay RFC 6750 `Bearer` challenges whichever
//! header carried the token.
//!
//! ## Responses (RFC 6750)
//!
//! | situation | status | `WWW-Authenticate` |
//! |---|---|---|
//! | no credential (no `Authorization` header or another scheme such as `Basic`, and no enabled API key header) | 401 (passes on an [optional](BearerAuthLayer::optional) layer) | `Bearer realm="…"` (no error code) |
//! | malformed header (empty, no token, not a `b64token`, `Bearer` run into the token as in `Bearertok` or `Bearer,tok`, non-ASCII), two `Authorization` headers, two API key headers, both an `Authorization: Bearer` and an API key header, `access_token` in the query string (however percent-encoded), a [computed requirement](BearerAuth::require_with) that fails | 400 | `Bearer realm="…", error="invalid_request"` |
//! | malformed, unknown, wrong secret, revoked, expired, idle, used up | 401 | `Bearer realm="…", error="invalid_token"` |
//! | valid token without the required scopes | 403 (401 on a layer built with [`insufficient_scope_as_401`](BearerAuthLayer::insufficient_scope_as_401), for introspection endpoints: RFC 7662 §2.3) | `Bearer realm="…", error="insufficient_scope", scope="<required>"` |
//! | the store failed (validation fails closed) | 503, `Retry-After: 1` | none |
//! | over a rate limit of the token or its subject (feature `ratelimit`, [`BearerAuth::rate_limit`]) | 429, `Retry-After`, `RateLimit-Policy`, `RateLimit`, a body naming the limit | none |
//!
//! The `scope` attribute is the space-separated list RFC 6750 §3 defines, for all-of and any-of
//! requirements alike: for [`require_any`](BearerAuth::require_any) it lists the alternatives
//! (a token with any one of them would do), which the challenge syntax cannot mark; a rendered body
//! can ([`Rejection::requires_any`]).
//!
//! Every `invalid_token` response is byte-identical, so a client cannot tell an unknown token from a
//! revoked or expired one. Tokens in query strings are refused (RFC 6750 §2.3 is optional and leaks
//! tokens into logs and history). Error responses carry `Cache-Control: no-store`.
//!
//! ## Error bodies
//!
//! Bodies are empty unless the configuration [renders them](BearerAuth::render_rejections): with
//! [`OAuthErrorJson`] (RFC 6749 §5.2 style `{"error": …, "error_description": …}`),
//! [`ProblemJson`] (RFC 9457 `application/problem+json`), or your own [`RenderRejection`]. A
//! renderer sees only the [`Rejection`] (kind, status, error code, a fixed description, required
//! scopes), never the token or why it was invalid, and cannot change the status or the
//! challenge, `Cache-Control` and `Retry-After` headers. Bodies reach the client for the response
//! body types `String`, `Vec<u8>` and `axum::body::Body` (feature `axum`); other body types keep
//! the empty body.
//!
//! ## Audit context
//!
//! The caller's context flows into audit events: the client IP comes from a header you trust
//! ([`BearerAuth::trust_client_ip_header`], e.g. `x-forwarded-for` set by your proxy; the last
//! comma-separated entry is used, the one your nearest proxy appended), else from a [`ClientAddr`]
//! extension, else (with the `axum` feature) from `ConnectInfo<SocketAddr>`. The user agent and the
//! request id (`x-request-id` by default) are copied too. The `Authorization` header and the API
//! key header are marked sensitive before the inner service sees them, so layers *inside* this one
//! (e.g. `tower-http`'s `TraceLayer` applied per route) never log them. Layers outside it see the
//! request first: put `tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer` outermost in
//! your stack, naming both headers.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod context;
mod credential;
#[cfg(feature = "dpop")]
mod dpop;
#[cfg(feature = "axum")]
mod extract;
#[cfg(feature = "ratelimit")]
mod ratelimit;
mod rejection;
mod requirement;
mod service;

use std::fmt;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use http::request::Parts;
use http::{HeaderName, StatusCode};
use token_core::{AnyOf, Requirement, Scope, TokenManager, ValidatedToken};
use tower_layer::Layer;

#[cfg(feature = "axum")]
pub use extract::MissingAuthLayer;
pub use rejection::{
    OAuthErrorJson, ProblemJson, Rejection, RejectionBody, RejectionKind, RenderRejection,
};
pub use service::BearerAuthService;
pub use token_core::RequirementError;

use rejection::Renderer;
use requirement::Required;

/// The validated identity, placed in request extensions by the layer.
///
/// With the `axum` feature it is also an extractor; a handler behind no layer gets a 500, because
/// that is a server misconfiguration, not a client error. Behind an
/// [optional](BearerAuthLayer::optional) layer extract `Option<Authenticated>`: `None` for a
/// request without credentials (a plain `Authenticated` answers those with the same 500).
#[derive(Debug, Clone)]
pub struct Authenticated(pub ValidatedToken);

impl Deref for Authenticated {
    type Target = ValidatedToken;
    fn deref(&self) -> &ValidatedToken {
        &self.0
    }
}

/// Marks a request an optional layer let through without credentials, so that
/// `Option<Authenticated>` can tell "anonymous" from "no layer".
#[derive(Debug, Clone, Copy)]
struct Anonymous;

/// The peer address of a request, for servers that are not axum (insert it as an extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

#[derive(Clone)]
struct Config {
    manager: TokenManager,
    realm: String,
    client_ip_header: Option<HeaderName>,
    request_id_header: HeaderName,
    api_key_header: Option<HeaderName>,
    renderer: Option<Arc<dyn RenderRejection>>,
    /// DPoP accepted (RFC 9449), and how.
    #[cfg(feature = "dpop")]
    dpop: Option<Arc<dpop::DpopSettings>>,
    /// Rate limits checked after authentication.
    #[cfg(feature = "ratelimit")]
    ratelimit: Option<token_ratelimit::RateLimiter>,
}

impl Config {
    /// Whether `Bearer` (and the API key header) is accepted: unless the layer is DPoP-only.
    fn accepts_bearer(&self) -> bool {
        #[cfg(feature = "dpop")]
        if let Some(settings) = &self.dpop {
            return settings.bearer;
        }
        true
    }

    /// The algorithms of the `DPoP` challenge, when DPoP is accepted.
    fn dpop_algs(&self) -> Option<&str> {
        #[cfg(feature = "dpop")]
        if let Some(settings) = &self.dpop {
            return Some(&settings.algs);
        }
        None
    }
}

/// Configuration shared by every layer built from it. Cheap to clone.
///
/// ```
/// use token_core::{HashKey, KeyId, Keyring, TokenManager};
/// use token_store_memory::MemoryStore;
/// use token_tower::{BearerAuth, OAuthErrorJson};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let manager = TokenManager::builder(MemoryStore::new(), Keyring::new(HashKey::generate(KeyId::new(1))?))
///     .build()?;
/// let auth = BearerAuth::new(manager)
///     .realm("acme")
///     .trust_client_ip_header(http::HeaderName::from_static("x-forwarded-for"))
///     .api_key_header()
///     .render_rejections(OAuthErrorJson);
/// let any_valid_token = auth.layer();
/// let writers_only = auth.require("widgets:write")?;
/// let readers_or_admins = auth.require_any(["widgets:read", "widgets:admin"])?;
/// # let _ = (any_valid_token, writers_only, readers_or_admins);
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
            .field("api_key_header", &self.config.api_key_header)
            .field("bodies", &Renderer(self.config.renderer.clone()))
            .finish_non_exhaustive()
    }
}

impl BearerAuth {
    /// Authentication through `manager`, realm `api`, no trusted IP header, request ids from
    /// `x-request-id`, `Authorization: Bearer` only, empty error bodies.
    pub fn new(manager: TokenManager) -> Self {
        Self {
            config: Arc::new(Config {
                manager,
                realm: "api".to_owned(),
                client_ip_header: None,
                request_id_header: HeaderName::from_static("x-request-id"),
                api_key_header: None,
                renderer: None,
                #[cfg(feature = "dpop")]
                dpop: None,
                #[cfg(feature = "ratelimit")]
                ratelimit: None,
            }),
        }
    }

    fn edit(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(Arc::make_mut(&mut self.config));
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

    /// Also accepts the token as the whole value of `x-api-key` (`x-api-key: acme_…`), as many
    /// API clients send it. Off by default.
    ///
    /// A request carrying both this header and `Authorization: Bearer`, or this header twice,
    /// is a 400 `invalid_request`; `Authorization` with another scheme (`Basic`) does not count
    /// as a credential. The header is marked sensitive like `Authorization`, and challenges stay
    /// RFC 6750 `Bearer` challenges.
    ///
    /// ```
    /// use token_core::{HashKey, KeyId, Keyring, TokenManager};
    /// use token_store_memory::MemoryStore;
    /// use token_tower::BearerAuth;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = TokenManager::builder(MemoryStore::new(), Keyring::new(HashKey::generate(KeyId::new(1))?))
    ///     .build()?;
    /// let auth = BearerAuth::new(manager).api_key_header();
    /// assert!(format!("{auth:?}").contains("x-api-key"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn api_key_header(self) -> Self {
        self.api_key_header_named(HeaderName::from_static("x-api-key"))
    }

    /// [`api_key_header`](Self::api_key_header) with another header name (e.g. `api-key`).
    pub fn api_key_header_named(self, header: HeaderName) -> Self {
        self.edit(|c| c.api_key_header = Some(header))
    }

    /// Renders the bodies of refusals with `renderer` ([`OAuthErrorJson`], [`ProblemJson`], or a
    /// closure); the default is an empty body. The status and the `WWW-Authenticate`,
    /// `Cache-Control` and `Retry-After` headers are the layer's either way.
    ///
    /// ```
    /// use token_core::{HashKey, KeyId, Keyring, TokenManager};
    /// use token_store_memory::MemoryStore;
    /// use token_tower::{BearerAuth, ProblemJson};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = TokenManager::builder(MemoryStore::new(), Keyring::new(HashKey::generate(KeyId::new(1))?))
    ///     .build()?;
    /// let auth = BearerAuth::new(manager).render_rejections(ProblemJson);
    /// # let _ = auth;
    /// # Ok(())
    /// # }
    /// ```
    pub fn render_rejections(self, renderer: impl RenderRejection) -> Self {
        let renderer: Arc<dyn RenderRejection> = Arc::new(renderer);
        self.edit(|c| c.renderer = Some(renderer))
    }

    /// Checks the rate limits of every authenticated request with `limiter` (feature
    /// `ratelimit`): the token's own [`RateLimits`](token_core::RateLimits) and the limiter's
    /// subject limits, at the layer's [cost](BearerAuthLayer::cost) (1 by default), after the
    /// token and its scopes passed and before its use is counted: a request refused for its
    /// token or scopes spends no rate capacity, and a 429 spends none of the token's
    /// `max_uses`. (A request that passes the limits and then loses the race for a
    /// use-limited token's last use has spent its rate capacity.) Each token spends its own
    /// buckets: a derived token's inherited limits and a rotation's successor start full, so
    /// what bounds a family or all of a user's tokens together is a subject limit.
    ///
    /// Within the limits, the response gets the `RateLimit-Policy` and `RateLimit` fields
    /// (draft-ietf-httpapi-ratelimit-headers: `"requests";q=100;w=60` and
    /// `"requests";r=99;t=1`). Over one, the answer is `429 Too Many Requests` with
    /// `Retry-After` (seconds, rounded up), the same fields and a body naming the limit
    /// (`{"error":"rate_limited","error_description":"…","limit":"requests","retry_after":12}`
    /// from [`OAuthErrorJson`], which is used for 429s when no renderer is set). A route whose
    /// cost exceeds what a limit holds at once is a 429 without `Retry-After`. With a Redis
    /// limiter set to refuse while Redis is down, the answer is 503. Anonymous requests on an
    /// [optional](BearerAuthLayer::optional) layer are not limited.
    ///
    /// ```
    /// use token_core::{HashKey, KeyId, Keyring, RateLimit, RateLimits, TokenManager};
    /// use token_ratelimit::RateLimiter;
    /// use token_store_memory::MemoryStore;
    /// use token_tower::BearerAuth;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = TokenManager::builder(MemoryStore::new(), Keyring::new(HashKey::generate(KeyId::new(1))?))
    ///     .build()?;
    /// let limiter = RateLimiter::builder()
    ///     .subject_limits(RateLimits::new([RateLimit::per_minute("requests", 600)?])?)
    ///     .build();
    /// let auth = BearerAuth::new(manager).rate_limit(limiter);
    /// let reads = auth.require("widgets:read")?; // costs 1
    /// let exports = auth.require("widgets:export")?.cost(50); // an expensive route
    /// # let _ = (reads, exports);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "ratelimit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ratelimit")))]
    pub fn rate_limit(self, limiter: token_ratelimit::RateLimiter) -> Self {
        self.edit(|c| c.ratelimit = Some(limiter))
    }

    fn build(&self, required: Required) -> BearerAuthLayer {
        BearerAuthLayer {
            config: Arc::clone(&self.config),
            required,
            scope_status: StatusCode::FORBIDDEN,
            anonymous: AnonymousRequests::Refused,
            #[cfg(feature = "ratelimit")]
            cost: 1,
            #[cfg(feature = "ratelimit")]
            spend: Arc::from([]),
        }
    }

    /// A layer that accepts any valid token.
    pub fn layer(&self) -> BearerAuthLayer {
        self.build(Required::All(Arc::new(Requirement::none())))
    }

    /// A layer that requires every scope in `scopes` (space-separated, concrete).
    pub fn require(&self, scopes: &str) -> Result<BearerAuthLayer, RequirementError> {
        Ok(self.build(Required::All(Arc::new(Requirement::parse(scopes)?))))
    }

    /// A layer that requires every scope in `scopes`.
    pub fn require_scopes(
        &self,
        scopes: impl IntoIterator<Item = Scope>,
    ) -> Result<BearerAuthLayer, RequirementError> {
        let required = Requirement::from_scopes(scopes)?;
        Ok(self.build(Required::All(Arc::new(required))))
    }

    /// A layer that requires at least one of `scopes` (each concrete; at least one).
    ///
    /// A 403 names all of them in the challenge, space-separated (`scope="widgets:read
    /// widgets:admin"`), the only list syntax RFC 6750 has; its description and a rendered body
    /// say any one will do.
    ///
    /// The token is checked with [`TokenManager::validate_any`](token_core::TokenManager::validate_any):
    /// one lookup, a use-limited token spends a use only when it passes, and a refusal is
    /// audited like any other.
    ///
    /// ```
    /// use token_core::{HashKey, KeyId, Keyring, TokenManager};
    /// use token_store_memory::MemoryStore;
    /// use token_tower::BearerAuth;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = TokenManager::builder(MemoryStore::new(), Keyring::new(HashKey::generate(KeyId::new(1))?))
    ///     .build()?;
    /// let readers = BearerAuth::new(manager).require_any(["widgets:read", "widgets:admin"])?;
    /// # let _ = readers;
    /// # Ok(())
    /// # }
    /// ```
    pub fn require_any<S: AsRef<str>>(
        &self,
        scopes: impl IntoIterator<Item = S>,
    ) -> Result<BearerAuthLayer, RequirementError> {
        let parsed = scopes
            .into_iter()
            .map(|s| s.as_ref().parse::<Scope>())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.build(Required::Any(Arc::new(AnyOf::from_scopes(parsed)?))))
    }

    /// A layer that requires every scope `compute` derives from the request head, such as a
    /// per-resource scope built from the path.
    ///
    /// `compute` runs for requests that carry a credential, before the token is validated. An
    /// `Err` (a path it cannot read) or a computed scope containing `*` is answered 400
    /// `invalid_request`, whose body says nothing about why; the error value is dropped. An empty
    /// list accepts any valid token.
    ///
    /// With axum, `route_layer` runs after routing but before extractors, so `Path` is not
    /// available yet: read the segments of `parts.uri.path()` (routing has already matched the
    /// route, so the shape is known; with axum's `matched-path` feature the
    /// `axum::extract::MatchedPath` extension names the route template too). Segments are
    /// still percent-encoded; an encoded character is not a valid scope character, so such a
    /// path is refused rather than decoded into a different resource.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use http::request::Parts;
    /// use token_core::{HashKey, KeyId, Keyring, Scope, ScopeError, TokenManager};
    /// use token_store_memory::MemoryStore;
    /// use token_tower::BearerAuth;
    ///
    /// /// `GET /repos/{owner}/{repo}` requires `repo:{owner}/{repo}:read`.
    /// fn repo_read(parts: &Parts) -> Result<Vec<Scope>, ScopeError> {
    ///     let mut segments = parts.uri.path().trim_start_matches('/').split('/').skip(1);
    ///     let owner = segments.next().unwrap_or_default();
    ///     let repo = segments.next().unwrap_or_default();
    ///     Ok(vec![Scope::new(&format!("repo:{owner}/{repo}:read"))?])
    /// }
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = TokenManager::builder(MemoryStore::new(), Keyring::new(HashKey::generate(KeyId::new(1))?))
    ///     .build()?;
    /// let app: Router = Router::new()
    ///     .route("/repos/{owner}/{repo}", get(|| async { "ok" }))
    ///     .route_layer(BearerAuth::new(manager).require_with(repo_read));
    /// # let _ = app;
    /// # Ok(())
    /// # }
    /// ```
    pub fn require_with<F, I, E>(&self, compute: F) -> BearerAuthLayer
    where
        F: Fn(&Parts) -> Result<I, E> + Send + Sync + 'static,
        I: IntoIterator<Item = Scope>,
    {
        self.build(Required::computed(compute))
    }
}

/// Why [`BearerAuth::dpop`] cannot use a public base URL.
#[cfg(feature = "dpop")]
#[cfg_attr(docsrs, doc(cfg(feature = "dpop")))]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublicUrlError {
    /// The URL given.
    pub url: String,
}

#[cfg(feature = "dpop")]
impl fmt::Display for PublicUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a public base URL: give scheme and authority only, such as https://api.example.com or http://127.0.0.1:3000",
            self.url
        )
    }
}

#[cfg(feature = "dpop")]
impl std::error::Error for PublicUrlError {}

#[cfg(feature = "dpop")]
#[cfg_attr(docsrs, doc(cfg(feature = "dpop")))]
impl BearerAuth {
    /// Also accepts `Authorization: DPoP <token>` with a `DPoP: <proof>` header (RFC 9449): the
    /// proof is checked by `verifier` against the request's method and its URI under
    /// `public_base_url` (`https://api.example.com`: scheme and authority as clients reach
    /// this service; the `Host` header is never trusted for it), then the token is validated
    /// with [`TokenManager::validate_with_proof`](token_core::TokenManager::validate_with_proof):
    /// a token bound to a key needs a proof by that key, a proof is accepted once across every
    /// instance sharing the store, an unbound token presented with a proof is refused, and a
    /// bound token presented as `Bearer` is refused (no downgrade).
    ///
    /// Refusals carry both challenges (`Bearer realm=...` and `DPoP realm=..., algs="ES256
    /// EdDSA PS256 RS256"`), the error in the scheme the request used: `invalid_dpop_proof`
    /// for a missing, invalid or replayed proof, `use_dpop_nonce` with a `DPoP-Nonce` header
    /// when the verifier requires server nonces; a success sends a fresh `DPoP-Nonce` before
    /// the current one rolls over.
    ///
    /// ```
    /// use token_core::{HashKey, KeyId, Keyring, TokenManager};
    /// use token_dpop::{DpopConfig, DpopVerifier};
    /// use token_store_memory::MemoryStore;
    /// use token_tower::BearerAuth;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = TokenManager::builder(MemoryStore::new(), Keyring::new(HashKey::generate(KeyId::new(1))?))
    ///     .build()?;
    /// let verifier = DpopVerifier::new(DpopConfig::new());
    /// let auth = BearerAuth::new(manager).dpop(verifier, "https://api.example.com")?;
    /// let bound_only = auth.clone().dpop_only(); // refuse plain Bearer on these routes
    /// # let _ = (auth, bound_only);
    /// # Ok(())
    /// # }
    /// ```
    pub fn dpop(
        self,
        verifier: token_dpop::DpopVerifier,
        public_base_url: &str,
    ) -> Result<Self, PublicUrlError> {
        let base = public_base_url.trim_end_matches('/');
        let (scheme, authority) = base.split_once("://").unwrap_or(("", ""));
        let valid = matches!(scheme, "http" | "https")
            && !authority.is_empty()
            && !authority.contains(['/', '?', '#', '@', ' ']);
        if !valid {
            return Err(PublicUrlError {
                url: public_base_url.to_owned(),
            });
        }
        let algs = verifier.algorithms_header();
        let settings = Arc::new(dpop::DpopSettings {
            verifier,
            public_base: base.to_owned(),
            algs,
            bearer: true,
        });
        Ok(self.edit(|c| c.dpop = Some(settings)))
    }

    /// Accepts only the DPoP scheme (after [`dpop`](Self::dpop)): a bearer token or API key is
    /// answered as a missing credential, with the `DPoP` challenge alone.
    pub fn dpop_only(self) -> Self {
        self.edit(|c| {
            if let Some(settings) = &c.dpop {
                c.dpop = Some(Arc::new(dpop::DpopSettings {
                    bearer: false,
                    ..(**settings).clone()
                }));
            }
        })
    }
}

/// What a layer does with a request that carries no credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnonymousRequests {
    Refused,
    Allowed,
}

/// The [`Layer`] built by [`BearerAuth`].
#[derive(Clone)]
pub struct BearerAuthLayer {
    config: Arc<Config>,
    required: Required,
    /// The status of an insufficient-scope answer: 403, or 401 for introspection endpoints.
    scope_status: StatusCode,
    anonymous: AnonymousRequests,
    /// What a request through this layer costs against the rate limits.
    #[cfg(feature = "ratelimit")]
    cost: u32,
    /// The on-demand rate limits requests through this layer spend, by name.
    #[cfg(feature = "ratelimit")]
    spend: Arc<[String]>,
}

impl BearerAuthLayer {
    /// What one request through this layer costs against every rate limit (default 1; feature
    /// `ratelimit`, see [`BearerAuth::rate_limit`]). A cost of 0 checks without consuming.
    #[cfg(feature = "ratelimit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ratelimit")))]
    pub fn cost(mut self, cost: u32) -> Self {
        self.cost = cost;
        self
    }

    /// Requests through this layer also spend the [on-demand](token_core::RateLimit::on_demand)
    /// rate limit `name` (of the token and of its subject), at the layer's cost: the
    /// `expensive` limit on the routes that are. Automatic limits apply everywhere regardless.
    /// Call it once per limit. A name no limit could have (`Expensive`, `""`) is an error, so a
    /// typo cannot silently leave a route unlimited; a valid name no token has costs nothing.
    #[cfg(feature = "ratelimit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ratelimit")))]
    pub fn spend(mut self, name: &str) -> Result<Self, token_core::RateLimitError> {
        token_core::RateLimit::check_name(name)?;
        let mut names = self.spend.to_vec();
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
        self.spend = names.into();
        Ok(self)
    }

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

    /// Lets requests without any credential through with no identity, for routes where
    /// authentication is optional; extract `Option<Authenticated>` (axum) or look for the
    /// [`Authenticated`] extension.
    ///
    /// Only the absence of a credential is anonymous: a malformed or repeated credential is
    /// still a 400, an invalid token a 401 and a token without the required scopes a 403, so a
    /// client whose token has been revoked learns it instead of silently seeing the public view.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use token_core::{HashKey, KeyId, Keyring, TokenManager};
    /// use token_store_memory::MemoryStore;
    /// use token_tower::{Authenticated, BearerAuth};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = TokenManager::builder(MemoryStore::new(), Keyring::new(HashKey::generate(KeyId::new(1))?))
    ///     .build()?;
    /// let app: Router = Router::new()
    ///     .route("/feed", get(|who: Option<Authenticated>| async move {
    ///         match who {
    ///             Some(who) => format!("feed for {}", who.subject()),
    ///             None => "public feed".to_owned(),
    ///         }
    ///     }))
    ///     .route_layer(BearerAuth::new(manager).layer().optional());
    /// # let _ = app;
    /// # Ok(())
    /// # }
    /// ```
    pub fn optional(mut self) -> Self {
        self.anonymous = AnonymousRequests::Allowed;
        self
    }
}

impl fmt::Debug for BearerAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuthLayer")
            .field("realm", &self.config.realm)
            .field("required", &self.required)
            .field("insufficient_scope_status", &self.scope_status.as_u16())
            .field("anonymous", &self.anonymous)
            .finish()
    }
}

impl<S> Layer<S> for BearerAuthLayer {
    type Service = BearerAuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BearerAuthService {
            inner,
            layer: self.clone(),
        }
    }
}
