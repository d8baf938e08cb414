//! Refusals: the RFC 6750 status and challenge, and the optional body a host renders.

use std::any::{Any, TypeId};
use std::fmt;

use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use token_core::Scope;

/// Why a request was refused.
///
/// Deliberately coarse: every cause of an invalid token (unknown, wrong secret, revoked, expired,
/// idle, used up, malformed) is [`InvalidToken`](Self::InvalidToken), so nothing rendered from it
/// can tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectionKind {
    /// No credential (or only another scheme, such as `Basic`): 401 with a bare challenge.
    MissingCredentials,
    /// A malformed, repeated or query-string credential, or a request a computed requirement
    /// could not be derived from: 400 `invalid_request`.
    InvalidRequest,
    /// The token is not valid now, whatever the cause: 401 `invalid_token`.
    InvalidToken,
    /// A valid token without the required scopes: 403 (or 401) `insufficient_scope`.
    InsufficientScope,
    /// The store failed; validation fails closed: 503.
    Unavailable,
    /// A DPoP proof is missing, malformed, does not verify or was used before (RFC 9449
    /// section 7.1): 401 `invalid_dpop_proof`, in the `DPoP` challenge.
    InvalidDpopProof,
    /// The server requires a (fresh) DPoP nonce: 401 `use_dpop_nonce`, with a `DPoP-Nonce`
    /// header carrying one (RFC 9449 section 8).
    UseDpopNonce,
    /// A valid token over one of its (or its subject's) rate limits (feature `ratelimit`): 429
    /// with `Retry-After` and the `RateLimit-Policy` / `RateLimit` fields, no challenge (the
    /// credential is fine). [`Rejection::rate_limit`] names the limit.
    RateLimited,
}

impl RejectionKind {
    /// The RFC 6750 error code, `None` where the RFC gives none (missing credentials, 503).
    pub fn error_code(self) -> Option<&'static str> {
        match self {
            Self::MissingCredentials | Self::Unavailable | Self::RateLimited => None,
            Self::InvalidRequest => Some("invalid_request"),
            Self::InvalidToken => Some("invalid_token"),
            Self::InsufficientScope => Some("insufficient_scope"),
            Self::InvalidDpopProof => Some("invalid_dpop_proof"),
            Self::UseDpopNonce => Some("use_dpop_nonce"),
        }
    }
}

/// The rate limit a request hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Limited {
    /// Its policy name (`requests`, `subject.requests`).
    pub(crate) limit: String,
    /// Seconds until the request would pass; `None` when it never can (it costs more than the
    /// limit holds).
    pub(crate) retry_after: Option<u64>,
}

/// A refusal as a [`RenderRejection`] sees it: no token, no per-cause detail.
#[derive(Debug, Clone, Copy)]
pub struct Rejection<'a> {
    kind: RejectionKind,
    status: StatusCode,
    required: &'a [Scope],
    any_of: bool,
    limited: Option<&'a Limited>,
}

impl<'a> Rejection<'a> {
    pub(crate) fn new(
        kind: RejectionKind,
        status: StatusCode,
        required: &'a [Scope],
        any_of: bool,
    ) -> Self {
        Self {
            kind,
            status,
            required,
            any_of,
            limited: None,
        }
    }

    pub(crate) fn limited(mut self, limited: Option<&'a Limited>) -> Self {
        self.limited = limited;
        self
    }

    /// The rate limit a [`RateLimited`](RejectionKind::RateLimited) request hit, by its policy
    /// name as in the `RateLimit` field (`requests`; a subject's limits are `subject.<name>`).
    pub fn rate_limit(&self) -> Option<&'a str> {
        self.limited.map(|l| l.limit.as_str())
    }

    /// Seconds until a rate-limited request would pass (the `Retry-After` value); `None` for
    /// other kinds and for a request that costs more than the limit ever allows.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.limited.and_then(|l| l.retry_after)
    }

    /// Why the request was refused.
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The response status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The RFC 6750 error code, as in the challenge (`None` for missing credentials and 503).
    pub fn error_code(&self) -> Option<&'static str> {
        self.kind.error_code()
    }

    /// A fixed, human-readable sentence for the kind; never names the cause of an invalid token.
    pub fn description(&self) -> &'static str {
        match self.kind {
            RejectionKind::MissingCredentials => "An access token is required.",
            RejectionKind::InvalidRequest => "The request is malformed.",
            RejectionKind::InvalidToken => "The access token is invalid.",
            RejectionKind::InsufficientScope if self.any_of => {
                "The access token has none of the accepted scopes."
            }
            RejectionKind::InsufficientScope => "The access token lacks a required scope.",
            RejectionKind::Unavailable => "Token validation is temporarily unavailable.",
            RejectionKind::InvalidDpopProof => "The DPoP proof is invalid.",
            RejectionKind::UseDpopNonce => "A DPoP nonce from the server is required.",
            RejectionKind::RateLimited if self.retry_after_secs().is_none() => {
                "The request costs more than the rate limit allows at once."
            }
            RejectionKind::RateLimited => "A rate limit is exhausted; retry after Retry-After.",
        }
    }

    /// The scopes named in an `insufficient_scope` challenge (empty for the other kinds).
    pub fn required_scopes(&self) -> &'a [Scope] {
        if self.kind == RejectionKind::InsufficientScope {
            self.required
        } else {
            &[]
        }
    }

    /// Whether any one of [`required_scopes`](Self::required_scopes) would do (a layer built with
    /// [`require_any`](crate::BearerAuth::require_any)) rather than all of them.
    pub fn requires_any(&self) -> bool {
        self.any_of
    }
}

/// A rendered error body and its content type.
///
/// ```
/// use http::HeaderValue;
/// use token_tower::RejectionBody;
///
/// let body = RejectionBody::new(HeaderValue::from_static("text/plain; charset=utf-8"), "denied");
/// assert_eq!(body.body(), "denied");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectionBody {
    content_type: HeaderValue,
    body: String,
}

impl RejectionBody {
    /// A body with its `Content-Type`.
    pub fn new(content_type: HeaderValue, body: impl Into<String>) -> Self {
        Self {
            content_type,
            body: body.into(),
        }
    }

    /// The `Content-Type` it is sent with.
    pub fn content_type(&self) -> &HeaderValue {
        &self.content_type
    }

    /// The body text.
    pub fn body(&self) -> &str {
        &self.body
    }
}

/// Renders the body of a refusal. The status, the `WWW-Authenticate` challenge, `Cache-Control:
/// no-store` and `Retry-After` are set by the layer and cannot be changed here; `None` sends the
/// default empty body.
///
/// The body is sent when the service's response body is `String`, `Vec<u8>` or (feature `axum`)
/// `axum::body::Body`; with any other body type the response keeps its empty default body and
/// gets no `Content-Type` (the layer only asks `Default` of the body, so it still works).
///
/// A closure `Fn(&Rejection<'_>) -> Option<RejectionBody>` is one:
///
/// ```
/// use http::HeaderValue;
/// use token_core::{HashKey, KeyId, Keyring, TokenManager};
/// use token_store_memory::MemoryStore;
/// use token_tower::{BearerAuth, Rejection, RejectionBody};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let manager = TokenManager::builder(MemoryStore::new(), Keyring::new(HashKey::generate(KeyId::new(1))?))
///     .build()?;
/// let auth = BearerAuth::new(manager).render_rejections(|r: &Rejection<'_>| {
///     Some(RejectionBody::new(
///         HeaderValue::from_static("text/plain; charset=utf-8"),
///         r.description(),
///     ))
/// });
/// # let _ = auth;
/// # Ok(())
/// # }
/// ```
pub trait RenderRejection: Send + Sync + 'static {
    /// The body for `rejection`, or `None` for an empty one.
    fn render(&self, rejection: &Rejection<'_>) -> Option<RejectionBody>;
}

impl<F> RenderRejection for F
where
    F: Fn(&Rejection<'_>) -> Option<RejectionBody> + Send + Sync + 'static,
{
    fn render(&self, rejection: &Rejection<'_>) -> Option<RejectionBody> {
        self(rejection)
    }
}

/// RFC 6749 §5.2-style JSON: `{"error": "invalid_token", "error_description": "…"}`
/// (`application/json`).
///
/// `error` is the challenge's error code; it is omitted for missing credentials (RFC 6750 §3.1
/// gives none) and is `temporarily_unavailable` (RFC 6749 §4.1.2.1) for a 503. An
/// `insufficient_scope` body adds `"scope"`, the challenge's space-separated list.
///
/// ```
/// use token_core::{HashKey, KeyId, Keyring, TokenManager};
/// use token_store_memory::MemoryStore;
/// use token_tower::{BearerAuth, OAuthErrorJson};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let manager = TokenManager::builder(MemoryStore::new(), Keyring::new(HashKey::generate(KeyId::new(1))?))
///     .build()?;
/// // 401: {"error":"invalid_token","error_description":"The access token is invalid."}
/// let auth = BearerAuth::new(manager).render_rejections(OAuthErrorJson);
/// # let _ = auth;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct OAuthErrorJson;

impl RenderRejection for OAuthErrorJson {
    fn render(&self, rejection: &Rejection<'_>) -> Option<RejectionBody> {
        let mut body = String::from("{");
        let code = match rejection.kind() {
            RejectionKind::Unavailable => Some("temporarily_unavailable"),
            RejectionKind::RateLimited => Some("rate_limited"),
            other => other.error_code(),
        };
        if let Some(code) = code {
            member(&mut body, "error", code);
        }
        member(&mut body, "error_description", rejection.description());
        if !rejection.required_scopes().is_empty() {
            member(&mut body, "scope", &scope_list(rejection.required_scopes()));
        }
        rate_limit_members(&mut body, rejection);
        body.push('}');
        Some(RejectionBody::new(
            HeaderValue::from_static("application/json"),
            body,
        ))
    }
}

/// RFC 9457 problem details (`application/problem+json`): `type` `about:blank`, `title` the
/// status's reason phrase, `status`, `detail` the [description](Rejection::description), and
/// the extension members `error` (the RFC 6750 code, when there is one) and `scope` (for
/// `insufficient_scope`).
///
/// ```
/// use token_core::{HashKey, KeyId, Keyring, TokenManager};
/// use token_store_memory::MemoryStore;
/// use token_tower::{BearerAuth, ProblemJson};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let manager = TokenManager::builder(MemoryStore::new(), Keyring::new(HashKey::generate(KeyId::new(1))?))
///     .build()?;
/// // 401: {"type":"about:blank","title":"Unauthorized","status":401,
/// //       "detail":"The access token is invalid.","error":"invalid_token"}
/// let auth = BearerAuth::new(manager).render_rejections(ProblemJson);
/// # let _ = auth;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ProblemJson;

impl RenderRejection for ProblemJson {
    fn render(&self, rejection: &Rejection<'_>) -> Option<RejectionBody> {
        let status = rejection.status();
        let mut body = String::from("{");
        member(&mut body, "type", "about:blank");
        member(
            &mut body,
            "title",
            status.canonical_reason().unwrap_or("Error"),
        );
        body.push_str(&format!(",\"status\":{}", status.as_u16()));
        member(&mut body, "detail", rejection.description());
        if let Some(code) = rejection.error_code() {
            member(&mut body, "error", code);
        }
        if !rejection.required_scopes().is_empty() {
            member(&mut body, "scope", &scope_list(rejection.required_scopes()));
        }
        rate_limit_members(&mut body, rejection);
        body.push('}');
        Some(RejectionBody::new(
            HeaderValue::from_static("application/problem+json"),
            body,
        ))
    }
}

/// `"limit":"requests","retry_after":12` for a rate-limited request (`retry_after` only when
/// retrying can help).
fn rate_limit_members(body: &mut String, rejection: &Rejection<'_>) {
    if let Some(limit) = rejection.rate_limit() {
        member(body, "limit", limit);
        if let Some(secs) = rejection.retry_after_secs() {
            body.push_str(&format!(",\"retry_after\":{secs}"));
        }
    }
}

fn scope_list(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(Scope::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Appends `"name":"value"` (with a leading comma unless first) as JSON.
fn member(out: &mut String, name: &str, value: &str) {
    if out.len() > 1 {
        out.push(',');
    }
    json_string(out, name);
    out.push(':');
    json_string(out, value);
}

fn json_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The renderer a configuration holds; `Debug` names only whether one is set.
pub(crate) struct Renderer(pub(crate) Option<std::sync::Arc<dyn RenderRejection>>);

impl fmt::Debug for Renderer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "custom" } else { "empty" })
    }
}

/// `text` as a response body of type `B`, for the body types that can carry one.
///
/// The layer's service only asks `ResBody: Default` (so `Response<()>` and boxed bodies keep
/// working); rather than tighten that bound, the types that hold text are recognised here.
fn text_body<B: 'static>(text: String) -> Option<B> {
    let id = TypeId::of::<B>();
    let body: Box<dyn Any> = if id == TypeId::of::<String>() {
        Box::new(text)
    } else if id == TypeId::of::<Vec<u8>>() {
        Box::new(text.into_bytes())
    } else {
        #[cfg(feature = "axum")]
        if id == TypeId::of::<axum::body::Body>() {
            let body: Box<dyn Any> = Box::new(axum::body::Body::from(text));
            return body.downcast::<B>().ok().map(|b| *b);
        }
        return None;
    };
    body.downcast::<B>().ok().map(|b| *b)
}

/// The authentication schemes a layer accepts, for its challenges.
pub(crate) struct Challenges<'a> {
    pub(crate) realm: &'a str,
    /// `Bearer` (and the API key header) accepted.
    pub(crate) bearer: bool,
    /// `DPoP` accepted, with these algorithms (`algs="ES256 EdDSA PS256 RS256"`).
    pub(crate) dpop_algs: Option<&'a str>,
    /// The request used the `DPoP` scheme: the error goes in the `DPoP` challenge.
    pub(crate) used_dpop: bool,
    /// A fresh server nonce to send as `DPoP-Nonce`.
    pub(crate) nonce: Option<String>,
}

impl Challenges<'_> {
    /// One `WWW-Authenticate` value per accepted scheme (RFC 9449 section 7.1: both when both
    /// are accepted), the error in the scheme the request used.
    fn values(&self, rejection: &Rejection<'_>) -> Vec<String> {
        let realm = quote(self.realm);
        let error = match rejection.kind() {
            RejectionKind::MissingCredentials | RejectionKind::Unavailable => None,
            RejectionKind::InsufficientScope => Some(format!(
                ", error=\"insufficient_scope\", scope={}",
                quote(&scope_list(rejection.required_scopes()))
            )),
            kind => kind.error_code().map(|code| format!(", error=\"{code}\"")),
        };
        if matches!(
            rejection.kind(),
            RejectionKind::Unavailable | RejectionKind::RateLimited
        ) {
            return Vec::new();
        }
        let mut values = Vec::new();
        if self.bearer {
            let mine = if self.used_dpop {
                None
            } else {
                error.as_deref()
            };
            values.push(format!("Bearer realm={realm}{}", mine.unwrap_or_default()));
        }
        if let Some(algs) = self.dpop_algs {
            let mine = if self.used_dpop || !self.bearer {
                error.as_deref()
            } else {
                None
            };
            values.push(format!(
                "DPoP realm={realm}, algs={}{}",
                quote(algs),
                mine.unwrap_or_default()
            ));
        }
        values
    }
}

/// The response for `rejection`: status, the RFC 6750 / RFC 9449 challenges, `Cache-Control:
/// no-store`, a `DPoP-Nonce` when one is due, `extra` fields (the rate-limit fields and
/// `Retry-After` of a 429), and the rendered body if `renderer` gives one and `B` can carry it.
/// A rate-limited refusal always has a body naming the limit: without a renderer, the
/// [`OAuthErrorJson`] one.
pub(crate) fn respond<B: Default + 'static>(
    rejection: &Rejection<'_>,
    challenges: &Challenges<'_>,
    renderer: &Renderer,
    extra: http::HeaderMap,
) -> Response<B> {
    let values = challenges.values(rejection);
    let rendered = match &renderer.0 {
        Some(custom) => custom.render(rejection),
        None if rejection.kind() == RejectionKind::RateLimited => OAuthErrorJson.render(rejection),
        None => None,
    };
    let (body, content_type) = match rendered {
        Some(rendered) => match text_body(rendered.body) {
            Some(body) => (body, Some(rendered.content_type)),
            None => (B::default(), None),
        },
        None => (B::default(), None),
    };
    let mut response = Response::new(body);
    *response.status_mut() = rejection.status();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if rejection.kind() == RejectionKind::Unavailable {
        headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    headers.extend(extra);
    for value in values {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.append(WWW_AUTHENTICATE, value);
        }
    }
    if let Some(nonce) = challenges
        .nonce
        .as_deref()
        .and_then(|n| HeaderValue::from_str(n).ok())
    {
        headers.insert(http::HeaderName::from_static("dpop-nonce"), nonce);
    }
    if let Some(content_type) = content_type {
        headers.insert(CONTENT_TYPE, content_type);
    }
    response
}

/// An RFC 7230 quoted-string; characters that cannot appear in a header are dropped.
pub(crate) fn quote(value: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_and_drops() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote("a\nb"), "\"ab\"");
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut out = String::new();
        json_string(&mut out, "a\"b\\c\n");
        assert_eq!(out, r#""a\"b\\c\u000a""#);
    }
}
