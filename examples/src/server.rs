//! The example HTTP server: an admin API for tokens, a protected resource, and the OAuth 2.0
//! revocation (RFC 7009) and introspection (RFC 7662) endpoints.
//!
//! Protected routes take the caller's token as `Authorization: Bearer <token>`, as
//! `x-api-key: <token>` (one of the two; both is `400 invalid_request`), or as
//! `Authorization: DPoP <token>` with a `DPoP: <proof>` header (RFC 9449; a token bound to a
//! key is accepted only that way, and each proof once). Proofs' `htu` is checked under the
//! public base URL ([`ServerOptions`]); with `TOKEN_EXAMPLE_DPOP_NONCE=1` proofs need a server
//! nonce (`use_dpop_nonce` with a `DPoP-Nonce` header first).
//!
//! | route | auth | answer |
//! |---|---|---|
//! | `POST /tokens` `{subject, scopes, ttl_seconds, max_uses?, refill?, rate_limits?, name?, metadata?, allowed_cidrs?, dpop_jkt?}` (`refill`: `"monthly"`, `"daily"`, `"every 3600s"`, with `max_uses`; `rate_limits`: `[{"name": "requests", "limit": 5, "per_seconds": 60}]`; `dpop_jkt`: bind the token to that key, RFC 9449) | `tokens:admin` | 201 `{token, id, expires_at}`; 400 for scopes that would grant `tokens:admin` |
//! | `GET /tokens/{id}` | `tokens:admin` | 200 the record ([`TokenView`]: no secret, no hash; with `state`, `metadata`, `allowed_cidrs`, `suspended_at`) |
//! | `PATCH /tokens/{id}` JSON merge of `scopes`, `ttl_seconds` (from now), `expires_at` (RFC 3339), `max_uses`, `refill` (`null` stops it), `rate_limits`, `name`, `description`, `metadata`, `allowed_cidrs` | `tokens:admin` | 200 the updated record; 400 with the typed reason when a change would widen the token (`null` removes `name`, `description` or `metadata`; removing a limit widens) |
//! | `POST /tokens/{id}/suspend`, `/resume` `{reason}` | `tokens:admin` | 200 `{changed: [ids]}` (descendants included); 409 when resuming a revoked or expired token |
//! | `DELETE /tokens/{id}` | `tokens:admin` | 204 (also when already revoked); 404 unknown |
//! | `POST /tokens/{id}/rotate` `{grace_seconds}` | `tokens:admin` | 201 `{token, id, expires_at}`; 409 if already rotated or not active |
//! | `GET /tokens/{id}/audit` | `tokens:admin` | 200 the audit events |
//! | `GET /metrics` | `tokens:admin` | 200 the library's counters in the Prometheus text format ([`metrics_handle`]) |
//! | `GET /widgets` | `widgets:read` | 200 |
//! | `POST /widgets` | `widgets:write` | 201 |
//! | `POST /oauth/revoke` form `token`, `token_type_hint?` | possession of the token | 200 always (400 if `token` is absent) |
//! | `POST /credentials/revoke` JSON list of tokens | none: possession (see [`credentials`](crate::credentials)) | 200 `{processed, results}`, the same whichever strings were tokens; 429 past the per-caller limit |
//! | `POST /oauth/introspect` form `token` | `tokens:introspect` | `{active: true, scope, sub, exp, iat, nbf?, jti, token_type, cnf?, allowed_cidrs?}` or exactly `{"active": false}` (also for a suspended token); 401 for a caller token without `tokens:introspect`. A bound token answers `token_type: "DPoP"` and `cnf: {jkt}` (RFC 9449 §6.2); a token with a network allowlist lists it in `allowed_cidrs` (introspection cannot check the resource server's caller: the resource server must) |
//!
//! Every protected route checks the caller token's rate limits (`rate_limits` at issue) after
//! authentication: within them the answer carries `RateLimit-Policy` and `RateLimit`; over one
//! it is `429` with `Retry-After` and `{"error": "rate_limited", "limit": "requests", ...}`.
//! With `TOKEN_EXAMPLE_REDIS_URL` the limits are shared by every instance
//! ([`rate_limiter_from_env`]).
//!
//! Authentication failures are token-tower's RFC 6750 answers: 401 without a token or with an
//! invalid one, 403 with `error="insufficient_scope"` for a valid token without the route's scope,
//! except on `/oauth/introspect`, which answers that with 401 and
//! `WWW-Authenticate: Bearer realm="token-example", error="insufficient_scope",
//! scope="tokens:introspect"` (RFC 7662 §2.3). Their bodies are token-tower's
//! [`OAuthErrorJson`]: `{"error": "invalid_token",
//! "error_description": "The access token is invalid."}` for every invalid token, the same for
//! every cause (no error code without a token; `scope` added for `insufficient_scope`).
//!
//! `expires_at` in the admin API is RFC 3339; `exp`, `iat`, `nbf` in introspection are Unix seconds
//! (RFC 7662). Error bodies have the RFC 6749 §5.2 shape, `{"error": "...", "error_description":
//! "..."}`, on every route. Responses that carry a token or a token's details (issue, rotate,
//! record, audit, introspect) are sent with `Cache-Control: no-store` (RFC 6749 §5.1).
//!
//! The OAuth endpoints take an `application/x-www-form-urlencoded` body of at most
//! [`OAUTH_BODY_LIMIT`] bytes with exactly one `token` parameter; other parameters
//! (`token_type_hint` included: this server has one kind of token) are ignored. A repeated `token`,
//! another content type or a malformed body is `400 invalid_request`; a larger body is `413`.
//! When the store is unavailable both answer `503` with `{"error": "temporarily_unavailable"}`:
//! introspection never reports a token active without having checked it, nor inactive without
//! having looked.

use std::future::Future;
use std::io::{self, IoSlice, Write};
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use token_core::sweeper::Sweeper;
use token_core::{
    Context, Error, IssueRequest, IssuedToken, Metadata, NetworkAllowlist, PlaintextToken,
    RevokeSelector, Scope, ScopeSet, TokenId, TokenManager, TokenUpdate, TokenView,
};
use token_dpop::{DpopConfig, DpopVerifier, NonceKey};
use token_ratelimit::{RateLimiter, RedisBackend};
use token_tower::{Authenticated, BearerAuth, OAuthErrorJson};

/// The largest body the OAuth endpoints read (a token is under 100 bytes).
pub const OAUTH_BODY_LIMIT: usize = 4 * 1024;

/// Scopes of the bootstrap admin token.
pub const ADMIN_SCOPES: &str = "tokens:admin tokens:introspect";

static ADMIN_SCOPE: std::sync::LazyLock<Scope> =
    std::sync::LazyLock::new(|| Scope::new("tokens:admin").unwrap_or_else(|_| unreachable!()));

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) manager: TokenManager,
    pub(crate) auth: BearerAuth,
}

/// How the server takes DPoP (RFC 9449): the public base URL proofs' `htu` is checked under,
/// and whether it requires server nonces.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ServerOptions {
    /// `scheme://host[:port]` as clients reach the server (`TOKEN_EXAMPLE_PUBLIC_URL`); by
    /// default `http://` and the listen address.
    pub public_url: Option<String>,
    /// Require server nonces in DPoP proofs (`TOKEN_EXAMPLE_DPOP_NONCE=1`).
    pub dpop_nonce: bool,
    /// The rate limiter every protected route checks tokens' limits with; by default an
    /// in-process one. [`rate_limiter_from_env`] gives one shared through Redis when
    /// `TOKEN_EXAMPLE_REDIS_URL` is set.
    pub rate_limiter: Option<RateLimiter>,
}

/// The example's rate limiter: shared by every instance through Redis at
/// `TOKEN_EXAMPLE_REDIS_URL` (e.g. `redis://127.0.0.1:6379`; falling back to in-process limits
/// while Redis is down, token-ratelimit's default), or in-process when it is unset. Fails when
/// the URL is set but Redis cannot be reached at start (the error never quotes a password).
pub async fn rate_limiter_from_env() -> Result<RateLimiter, token_ratelimit::ConnectError> {
    let builder = RateLimiter::builder();
    match std::env::var("TOKEN_EXAMPLE_REDIS_URL") {
        Ok(url) if !url.is_empty() => Ok(builder.redis(RedisBackend::connect(&url).await?).build()),
        _ => Ok(builder.build()),
    }
}

impl ServerOptions {
    /// The options from `TOKEN_EXAMPLE_PUBLIC_URL` and `TOKEN_EXAMPLE_DPOP_NONCE`.
    ///
    /// ```
    /// let options = examples::server::ServerOptions::from_env();
    /// # let _ = options;
    /// ```
    pub fn from_env() -> Self {
        Self {
            public_url: std::env::var("TOKEN_EXAMPLE_PUBLIC_URL").ok(),
            dpop_nonce: std::env::var("TOKEN_EXAMPLE_DPOP_NONCE").is_ok_and(|v| v == "1"),
            rate_limiter: None,
        }
    }
}

/// Builds the router over `manager`: every protected route takes `Bearer`, `x-api-key` and
/// `DPoP` (proofs checked under `public_url`).
pub fn router(
    manager: TokenManager,
    public_url: &str,
    options: &ServerOptions,
) -> Result<Router, Box<dyn std::error::Error + Send + Sync>> {
    // Counting starts with the router, not with the first scrape.
    metrics_handle();
    let mut dpop = DpopConfig::new();
    if options.dpop_nonce {
        dpop = dpop.nonces(NonceKey::generate()?);
    }
    let auth = BearerAuth::new(manager.clone())
        .realm("token-example")
        .api_key_header()
        .render_rejections(OAuthErrorJson)
        .rate_limit(
            options
                .rate_limiter
                .clone()
                .unwrap_or_else(|| RateLimiter::builder().build()),
        )
        .dpop(DpopVerifier::new(dpop), public_url)?;
    let state = AppState {
        manager,
        auth: auth.clone(),
    };
    let admin = Router::new()
        .route("/tokens", post(create_token))
        .route(
            "/tokens/{id}",
            get(get_token).delete(delete_token).patch(patch_token),
        )
        .route("/tokens/{id}/suspend", post(suspend_token))
        .route("/tokens/{id}/resume", post(resume_token))
        .route("/tokens/{id}/rotate", post(rotate_token))
        .route("/tokens/{id}/audit", get(token_audit))
        .route("/metrics", get(metrics_page))
        .route_layer(auth.require("tokens:admin")?);
    let widgets = Router::new().route(
        "/widgets",
        get(list_widgets.layer(auth.require("widgets:read")?))
            .post(create_widget.layer(auth.require("widgets:write")?)),
    );
    let oauth = Router::new()
        .route(
            "/oauth/introspect",
            // RFC 7662 §2.3: a caller without the privilege to introspect gets 401, not 403.
            post(crate::oauth::introspect).route_layer(
                auth.require("tokens:introspect")?
                    .insufficient_scope_as_401(),
            ),
        )
        .route("/oauth/revoke", post(crate::oauth::oauth_revoke))
        .layer(DefaultBodyLimit::max(OAUTH_BODY_LIMIT));
    let found = crate::credentials::router(state.manager.clone(), Default::default());
    Ok(admin
        .merge(widgets)
        .merge(oauth)
        .with_state(state)
        .merge(found))
}

/// Opens the store named by `url` (`sqlite://…` or `postgres://…`), runs its migrations and builds
/// a manager (prefix `example`) over it. Errors never quote the URL's password.
pub async fn open_manager(
    url: &str,
    key: token_core::HashKey,
) -> Result<TokenManager, Box<dyn std::error::Error + Send + Sync>> {
    let keyring = token_core::Keyring::new(key);
    let builder = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = token_store_postgres::PgStore::connect(url).await?;
        store.migrate().await?;
        TokenManager::builder(store, keyring)
    } else if url.starts_with("sqlite:") {
        let store = token_store_sqlite::SqliteStore::connect(url).await?;
        store.migrate().await?;
        TokenManager::builder(store, keyring)
    } else {
        return Err(format!(
            "unsupported database URL {:?}; use sqlite://path or postgres://…",
            crate::redact::redacted_url(url)
        )
        .into());
    };
    // The validation cache: one line to opt out (changes through this server are seen at once;
    // other instances' within the store's feed delay, or the cache's 1 s maximum age).
    Ok(builder
        .prefix("example")?
        .cache(token_core::CacheConfig::default())
        .build()?)
}

/// The process's Prometheus recorder, installed on first use: the library's counters
/// (`token_validations_total`, `token_operations_total`, ...) as `GET /metrics` shows them. If
/// the host installed another `metrics` recorder first, the page stays empty (the library's
/// counts go to that recorder).
pub fn metrics_handle() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = metrics_exporter_prometheus::PrometheusBuilder::new();
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder already installed: keep it, serve an empty page.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

async fn metrics_page() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics_handle().render(),
    )
        .into_response()
}

/// Issues the bootstrap admin token (`tokens:admin tokens:introspect`, one hour).
pub async fn bootstrap_admin(manager: &TokenManager) -> Result<IssuedToken, Error> {
    manager
        .issue(
            IssueRequest::new("bootstrap-admin", ScopeSet::parse(ADMIN_SCOPES)?)
                .ttl(Duration::from_secs(3600))
                .name("bootstrap admin")
                .context(Context::new().actor("server-startup")),
        )
        .await
}

/// Writes `admin token: <token>` and a newline to `out`, then flushes it.
///
/// The token is written from its own zeroizing buffer: no `String` or `format!` copy is made. The
/// three parts go out in vectored writes whose last part is the newline, because stdout's
/// `LineWriter` passes a write that ends a line straight to the file descriptor, while the token
/// written on its own (as `println!` writes it) would be copied into stdout's buffer, which is
/// never wiped.
///
/// ```
/// use examples::server::write_admin_token;
/// use token_core::{PlaintextToken, TokenPrefix};
///
/// let token = PlaintextToken::generate(&TokenPrefix::new("example")?)?;
/// let mut out = Vec::new();
/// write_admin_token(&mut out, &token)?;
/// assert_eq!(out, [b"admin token: ", token.expose_secret().as_bytes(), b"\n"].concat());
/// // The server writes to a locked stdout:
/// write_admin_token(&mut std::io::stdout().lock(), &token)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_admin_token(out: &mut impl Write, token: &PlaintextToken) -> io::Result<()> {
    let mut parts = [
        IoSlice::new(b"admin token: "),
        IoSlice::new(token.expose_secret().as_bytes()),
        IoSlice::new(b"\n"),
    ];
    let mut rest = &mut parts[..];
    // `Write::write_all_vectored` is not stable yet: the same loop.
    while !rest.is_empty() {
        match out.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut rest, written),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    out.flush()
}

/// Serves `router` on `listener` until `shutdown` completes. A [`Sweeper`] runs retention (and
/// flushes coalesced usage) every `sweep_every`; on shutdown it stops cleanly and usage is flushed
/// once more.
pub async fn serve(
    listener: tokio::net::TcpListener,
    manager: TokenManager,
    sweep_every: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    serve_with(
        listener,
        manager,
        &ServerOptions::default(),
        sweep_every,
        shutdown,
    )
    .await
}

/// [`serve`] with [`ServerOptions`].
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    manager: TokenManager,
    options: &ServerOptions,
    sweep_every: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let public_url = match &options.public_url {
        Some(url) => url.clone(),
        None => format!("http://{}", listener.local_addr()?),
    };
    let app = router(manager.clone(), &public_url, options)?;
    let sweeper = Sweeper::spawn(manager.clone(), sweep_every);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    sweeper.shutdown().await;
    manager.flush_usage().await?;
    Ok(())
}

// ----- errors ------------------------------------------------------------------------------

pub(crate) struct ApiError {
    status: StatusCode,
    error: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.error, "error_description": self.message})),
        )
            .into_response()
    }
}

impl From<Error> for ApiError {
    /// Every error answered by the library's one mapping ([`token_core::status`]).
    fn from(e: Error) -> Self {
        let answer = e.http();
        let status =
            StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let code = answer.code;
        if status.is_server_error() {
            // Details (driver messages) stay in the server's log, not in responses.
            eprintln!("request failed: {e}");
            return Self::new(status, code, "the token service is unavailable; try again");
        }
        Self::new(status, code, e.to_string())
    }
}

fn parse_id(text: &str) -> Result<TokenId, ApiError> {
    text.parse().map_err(|e: token_core::FormatError| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.to_string())
    })
}

fn actor_context(state: &AppState, parts: &Parts, who: &Authenticated) -> Context {
    state
        .auth
        .context_of(parts)
        .actor(format!("{} (token {})", who.subject(), who.id()))
}

/// A response that caches must not keep: it carries a token or a token's details.
pub(crate) fn no_store(response: impl IntoResponse) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], response).into_response()
}

fn rfc3339(at: Option<OffsetDateTime>) -> Option<String> {
    at.and_then(|t| t.format(&Rfc3339).ok())
}

// ----- admin API ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct CreateToken {
    subject: String,
    scopes: Vec<String>,
    ttl_seconds: u64,
    max_uses: Option<u64>,
    name: Option<String>,
    metadata: Option<serde_json::Value>,
    allowed_cidrs: Option<Vec<String>>,
    /// Binds the token to the key with this RFC 7638 thumbprint (DPoP `cnf.jkt`).
    dpop_jkt: Option<String>,
    /// When `max_uses` comes back: `"monthly"`, `"daily"`, `"every 3600s"`.
    refill: Option<String>,
    /// Named rate limits, `[{"name": "requests", "limit": 5, "per_seconds": 60}]`.
    rate_limits: Option<serde_json::Value>,
}

fn rate_limits_of(value: serde_json::Value) -> Result<token_core::RateLimits, ApiError> {
    serde_json::from_value(value).map_err(|e| {
        bad_request(format!(
            "rate_limits must be a list of {{\"name\", \"limit\", \"per_seconds\"}}: {e}"
        ))
    })
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
}

fn metadata_of(value: serde_json::Value) -> Result<Metadata, ApiError> {
    Metadata::from_value(value).map_err(|e| bad_request(e.to_string()))
}

fn networks_of(cidrs: &[String]) -> Result<NetworkAllowlist, ApiError> {
    NetworkAllowlist::from_networks(cidrs).map_err(|e| bad_request(e.to_string()))
}

/// Borrows the token: serialized straight into the response body, never copied into a `String`.
#[derive(Serialize)]
struct IssuedBody<'a> {
    token: &'a str,
    id: TokenId,
    expires_at: Option<String>,
}

fn issued_body(issued: &IssuedToken) -> IssuedBody<'_> {
    IssuedBody {
        token: issued.token.expose_secret(),
        id: issued.token.id(),
        expires_at: rfc3339(issued.record.expires_at),
    }
}

async fn create_token(
    State(state): State<AppState>,
    who: Authenticated,
    parts: Parts,
    Json(body): Json<CreateToken>,
) -> Result<Response, ApiError> {
    let scopes = ScopeSet::parse(&body.scopes.join(" ")).map_err(Error::from)?;
    // The admin API never mints admin power: otherwise the one-hour bootstrap token could mint a
    // 90-day admin token, and so on forever. (`tokens:introspect` is read-only and may be minted,
    // e.g. for a resource server that introspects.)
    if let Some(scope) = scopes.iter().find(|s| s.covers(&ADMIN_SCOPE)) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            format!("scope {scope} would grant token administration; it cannot be minted here"),
        ));
    }
    if body.ttl_seconds == 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "ttl_seconds must be at least 1",
        ));
    }
    let mut request = IssueRequest::new(body.subject, scopes)
        .ttl(Duration::from_secs(body.ttl_seconds))
        .context(actor_context(&state, &parts, &who));
    if let Some(max) = body.max_uses {
        request = request.max_uses(max);
    }
    if let Some(name) = body.name {
        request = request.name(name);
    }
    if let Some(metadata) = body.metadata {
        request = request.metadata(metadata_of(metadata)?);
    }
    if let Some(cidrs) = body.allowed_cidrs {
        request = request.allowed_networks(networks_of(&cidrs)?);
    }
    if let Some(jkt) = body.dpop_jkt {
        let jkt = token_core::KeyThumbprint::parse(&jkt).map_err(|e| bad_request(e.to_string()))?;
        request = request.bind_to_key(jkt);
    }
    if let Some(refill) = body.refill {
        let refill = refill
            .parse::<token_core::UseRefill>()
            .map_err(|e| bad_request(e.to_string()))?;
        request = request.refill_uses(refill);
    }
    if let Some(limits) = body.rate_limits {
        request = request.rate_limits(rate_limits_of(limits)?);
    }
    let issued = state.manager.issue(request).await?;
    Ok(no_store((StatusCode::CREATED, Json(issued_body(&issued)))))
}

async fn get_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let record = state
        .manager
        .inspect(id)
        .await?
        .ok_or(Error::NotFound(id))?;
    let now = state.manager.clock().now();
    Ok(no_store(Json(record.view_at(now))))
}

/// `PATCH /tokens/{id}`: a JSON merge (RFC 7396) of the fields `POST /tokens` takes, applied
/// with [`TokenManager::update`], which only narrows.
async fn patch_token(
    State(state): State<AppState>,
    who: Authenticated,
    parts: Parts,
    Path(id): Path<String>,
    Json(patch): Json<serde_json::Map<String, serde_json::Value>>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let update = update_from_patch(patch, state.manager.clock().now())?;
    let record = state
        .manager
        .update_with(id, update, &actor_context(&state, &parts, &who))
        .await?;
    let now = state.manager.clock().now();
    Ok(no_store(Json::<TokenView>(record.view_at(now))))
}

/// The [`TokenUpdate`] a merge patch asks for. `null` removes `name`, `description` and
/// `metadata`; for a granting field it would remove a limit, which widens, so it is refused.
fn update_from_patch(
    patch: serde_json::Map<String, serde_json::Value>,
    now: OffsetDateTime,
) -> Result<TokenUpdate, ApiError> {
    use serde_json::Value;
    let mut update = TokenUpdate::new();
    let text = |field: &str, value: &Value| -> Result<Option<String>, ApiError> {
        match value {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            _ => Err(bad_request(format!("{field} must be a string or null"))),
        }
    };
    let unsigned = |field: &str, value: &Value| -> Result<u64, ApiError> {
        value.as_u64().ok_or_else(|| {
            bad_request(format!(
                "{field} must be a positive integer (null would remove the limit, which widens the token)"
            ))
        })
    };
    for (field, value) in patch {
        update = match (field.as_str(), value) {
            ("name", v) => match text("name", &v)? {
                Some(name) => update.name(name),
                None => update.clear_name(),
            },
            ("description", v) => match text("description", &v)? {
                Some(description) => update.description(description),
                None => update.clear_description(),
            },
            ("metadata", Value::Null) => update.clear_metadata(),
            ("metadata", v) => update.metadata(metadata_of(v)?),
            ("scopes", Value::Array(items)) => {
                let names: Vec<String> = items
                    .iter()
                    .map(|s| s.as_str().map(str::to_owned))
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad_request("scopes must be a list of strings"))?;
                update.scopes(ScopeSet::parse(&names.join(" ")).map_err(Error::from)?)
            }
            ("allowed_cidrs", Value::Array(items)) => {
                let cidrs: Vec<String> = items
                    .iter()
                    .map(|s| s.as_str().map(str::to_owned))
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad_request("allowed_cidrs must be a list of strings"))?;
                update.allowed_networks(networks_of(&cidrs)?)
            }
            ("ttl_seconds", v) => match unsigned("ttl_seconds", &v)? {
                0 => return Err(bad_request("ttl_seconds must be at least 1")),
                secs => update.expires_in(Duration::from_secs(secs)),
            },
            ("expires_at", Value::String(at)) => {
                let at = OffsetDateTime::parse(&at, &Rfc3339)
                    .map_err(|e| bad_request(format!("expires_at is not RFC 3339: {e}")))?;
                if at <= now {
                    return Err(bad_request(
                        "expires_at is not in the future; revoke the token to end it now",
                    ));
                }
                update.expires_at(at)
            }
            ("max_uses", v) => update.max_uses(unsigned("max_uses", &v)?),
            ("refill", Value::Null) => update.stop_refill(),
            ("refill", Value::String(refill)) => update.refill_uses(
                refill
                    .parse::<token_core::UseRefill>()
                    .map_err(|e| bad_request(e.to_string()))?,
            ),
            ("rate_limits", v @ Value::Array(_)) => update.rate_limits(rate_limits_of(v)?),
            (known @ ("scopes" | "allowed_cidrs" | "expires_at" | "refill" | "rate_limits"), _) => {
                return Err(bad_request(format!(
                    "{known} has the wrong type (null would remove it, which widens the token)"
                )));
            }
            (other, _) => {
                return Err(bad_request(format!(
                    "unknown field {other:?}; PATCH takes scopes, ttl_seconds, expires_at, max_uses, refill, rate_limits, name, description, metadata, allowed_cidrs"
                )));
            }
        };
    }
    Ok(update)
}

#[derive(Deserialize)]
struct ReasonBody {
    reason: String,
}

async fn suspend_token(
    state: State<AppState>,
    who: Authenticated,
    parts: Parts,
    id: Path<String>,
    body: Json<ReasonBody>,
) -> Result<Response, ApiError> {
    change_suspension(state, who, parts, id, body, true).await
}

async fn resume_token(
    state: State<AppState>,
    who: Authenticated,
    parts: Parts,
    id: Path<String>,
    body: Json<ReasonBody>,
) -> Result<Response, ApiError> {
    change_suspension(state, who, parts, id, body, false).await
}

async fn change_suspension(
    State(state): State<AppState>,
    who: Authenticated,
    parts: Parts,
    Path(id): Path<String>,
    Json(body): Json<ReasonBody>,
    suspend: bool,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    if state.manager.inspect(id).await?.is_none() {
        return Err(Error::NotFound(id).into());
    }
    let ctx = actor_context(&state, &parts, &who);
    let selector = RevokeSelector::Token(id);
    let changed = if suspend {
        state
            .manager
            .suspend_with(selector, body.reason, &ctx)
            .await?
    } else {
        state
            .manager
            .resume_with(selector, body.reason, &ctx)
            .await?
    };
    Ok(Json(json!({ "changed": changed })).into_response())
}

async fn delete_token(
    State(state): State<AppState>,
    who: Authenticated,
    parts: Parts,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    if state.manager.inspect(id).await?.is_none() {
        return Err(Error::NotFound(id).into());
    }
    state
        .manager
        .revoke_with(
            token_core::RevokeSelector::Token(id),
            "revoked through the admin API",
            &actor_context(&state, &parts, &who),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct RotateBody {
    grace_seconds: u64,
}

async fn rotate_token(
    State(state): State<AppState>,
    who: Authenticated,
    parts: Parts,
    Path(id): Path<String>,
    Json(body): Json<RotateBody>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let issued = state
        .manager
        .rotate_with(
            id,
            Duration::from_secs(body.grace_seconds),
            &actor_context(&state, &parts, &who),
        )
        .await?;
    Ok(no_store((StatusCode::CREATED, Json(issued_body(&issued)))))
}

async fn token_audit(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    Ok(no_store(Json(state.manager.audit(id).await?)))
}

// ----- protected resource ------------------------------------------------------------------

async fn list_widgets(who: Authenticated) -> Json<serde_json::Value> {
    Json(json!({"widgets": ["sprocket", "gear"], "subject": who.subject()}))
}

async fn create_widget(who: Authenticated) -> (StatusCode, Json<serde_json::Value>) {
    (
        StatusCode::CREATED,
        Json(json!({"created": true, "subject": who.subject()})),
    )
}
