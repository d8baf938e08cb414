//! The [`Service`] that authenticates each request.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use http::HeaderMap;
use http::header::AUTHORIZATION;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use token_core::{AdmissionError, ErrorClass, Required, ValidatedToken, ValidationError};
use tower_service::Service;

use crate::credential::Scheme;
use crate::rejection::{self, Challenges, Rejection, RejectionKind, Renderer};
use crate::requirement::Resolved;
use crate::{Anonymous, AnonymousRequests, Authenticated, BearerAuthLayer, context, credential};

/// The [`Service`] produced by [`BearerAuthLayer`].
#[derive(Clone)]
pub struct BearerAuthService<S> {
    pub(crate) inner: S,
    pub(crate) layer: BearerAuthLayer,
}

impl<S> fmt::Debug for BearerAuthService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuthService")
            .field("required", &self.layer.required)
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
        let layer = self.layer.clone();
        let api_key_header = layer.config.api_key_header.as_ref();
        for (name, value) in request.headers_mut().iter_mut() {
            if name == AUTHORIZATION || Some(name) == api_key_header {
                value.set_sensitive(true);
            }
        }
        // Only the head is borrowed across the validation await, so the body need not be Sync.
        let (mut parts, body) = request.into_parts();
        Box::pin(async move {
            let (offer, limit_fields) = match authenticate(&layer, &parts).await {
                Ok(Accepted {
                    identity,
                    offer,
                    limit_fields,
                }) => {
                    match identity {
                        Some(identity) => {
                            parts.extensions.insert(Authenticated(identity));
                        }
                        None => {
                            parts.extensions.insert(Anonymous);
                        }
                    }
                    (offer, limit_fields)
                }
                Err(refusal) => return Ok(refuse(&layer, refusal)),
            };
            let mut response = inner.call(Request::from_parts(parts, body)).await?;
            // RFC 9449 section 8: a fresh nonce before the current one stops being accepted.
            if let Some(nonce) = offer.and_then(|n| http::HeaderValue::from_str(&n).ok()) {
                response
                    .headers_mut()
                    .insert(http::HeaderName::from_static("dpop-nonce"), nonce);
            }
            response.headers_mut().extend(limit_fields);
            Ok(response)
        })
    }
}

/// The response refusing a request: the status for the kind, the challenges, the rendered
/// body and the extra fields (a 429's rate-limit fields).
fn refuse<B: Default + 'static>(layer: &BearerAuthLayer, refusal: Refusal) -> Response<B> {
    let scopes = refusal.required.as_ref().map_or(&[][..], Resolved::scopes);
    let any_of = refusal.required.as_ref().is_some_and(Resolved::is_any);
    let status = match refusal.kind {
        RejectionKind::InsufficientScope => layer.scope_status,
        RejectionKind::InvalidRequest => StatusCode::BAD_REQUEST,
        RejectionKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        RejectionKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::UNAUTHORIZED,
    };
    let (limited, extra) = match refusal.limit {
        Some(limit) => (limit.limited, limit.headers),
        None => (None, HeaderMap::new()),
    };
    let rejection = Rejection::new(refusal.kind, status, scopes, any_of).limited(limited.as_ref());
    let renderer = Renderer(layer.config.renderer.clone());
    let challenges = Challenges {
        realm: &layer.config.realm,
        bearer: layer.config.accepts_bearer(),
        dpop_algs: layer.config.dpop_algs(),
        used_dpop: refusal.used_dpop,
        nonce: refusal.nonce,
    };
    rejection::respond(&rejection, &challenges, &renderer, extra)
}

/// What a passed request carries on: the identity (`None` for an anonymous request an optional
/// layer lets through), a fresh DPoP nonce to offer and the rate-limit fields of the answer.
struct Accepted {
    identity: Option<ValidatedToken>,
    offer: Option<String>,
    limit_fields: HeaderMap,
}

/// A refusal and, once known, the requirement it was checked against.
struct Refusal {
    kind: RejectionKind,
    required: Option<Resolved>,
    /// The request used the `DPoP` scheme.
    used_dpop: bool,
    /// A fresh DPoP nonce to send with the refusal.
    nonce: Option<String>,
    /// The rate limiter's refusal (a 429's limit, `Retry-After` and rate-limit fields); boxed,
    /// as it is rare and large.
    limit: Option<Box<LimitRefusal>>,
}

impl From<RejectionKind> for Refusal {
    fn from(kind: RejectionKind) -> Self {
        Self {
            kind,
            required: None,
            used_dpop: false,
            nonce: None,
            limit: None,
        }
    }
}

/// A valid token the rate limiter refused (or could not check).
pub(crate) struct LimitRefusal {
    pub(crate) kind: RejectionKind,
    pub(crate) limited: Option<rejection::Limited>,
    pub(crate) headers: HeaderMap,
}

/// The admission step of every validation: the rate limits, when the layer has a limiter,
/// checked before the token's use is counted (so a 429 consumes none of its `max_uses`).
async fn admit(
    layer: &BearerAuthLayer,
    validated: &ValidatedToken,
) -> Result<HeaderMap, LimitRefusal> {
    #[cfg(feature = "ratelimit")]
    if let Some(limiter) = &layer.config.ratelimit {
        return crate::ratelimit::check(limiter, validated, layer.cost, &layer.spend).await;
    }
    let _ = (layer, validated);
    Ok(HeaderMap::new())
}

/// A validation's outcome as the layer answers it.
fn answered(
    validated: Result<(ValidatedToken, HeaderMap), AdmissionError<LimitRefusal>>,
    offer: Option<String>,
    required: Resolved,
    used_dpop: bool,
) -> Result<Accepted, Refusal> {
    match validated {
        Ok((identity, limit_fields)) => Ok(Accepted {
            identity: Some(identity),
            offer,
            limit_fields,
        }),
        // A 429 still offers the fresh DPoP nonce (the proof's jti is spent): the client's
        // retry needs it.
        Err(AdmissionError::Refused { refusal, .. }) => Err(Refusal {
            kind: refusal.kind,
            required: None,
            used_dpop,
            nonce: offer,
            limit: Some(Box::new(refusal)),
        }),
        Err(AdmissionError::Invalid(e)) => Err(Refusal {
            kind: match (&e, e.class()) {
                (ValidationError::ProofReplayed, _) => RejectionKind::InvalidDpopProof,
                (_, ErrorClass::InsufficientScope) => RejectionKind::InsufficientScope,
                (_, ErrorClass::InvalidToken) => RejectionKind::InvalidToken,
                _ => RejectionKind::Unavailable,
            },
            required: Some(required),
            used_dpop,
            nonce: None,
            limit: None,
        }),
        Err(_) => Err(RejectionKind::Unavailable.into()),
    }
}

/// Authenticates the request head against the layer's requirement.
async fn authenticate(layer: &BearerAuthLayer, request: &Parts) -> Result<Accepted, Refusal> {
    let config = &layer.config;
    let presented = credential::credential(
        request,
        config.api_key_header.as_ref(),
        config.dpop_algs().is_some(),
    )?;
    let Some((token, scheme)) = presented else {
        return match layer.anonymous {
            AnonymousRequests::Allowed => Ok(Accepted {
                identity: None,
                offer: None,
                limit_fields: HeaderMap::new(),
            }),
            AnonymousRequests::Refused => Err(RejectionKind::MissingCredentials.into()),
        };
    };
    if scheme == Scheme::Bearer && !config.accepts_bearer() {
        // A DPoP-only layer: a bearer token is no credential it takes.
        return Err(RejectionKind::MissingCredentials.into());
    }
    let required = layer
        .required
        .resolve(request)
        .ok_or(RejectionKind::InvalidRequest)?;
    let ctx = context::context_of(config, request);
    match scheme {
        Scheme::Bearer => {
            let validated = config
                .manager
                .validate_admitted(token, scopes_of(&required), &ctx, None, async |v| {
                    admit(layer, v).await
                })
                .await;
            answered(validated, None, required, false)
        }
        Scheme::Dpop => proven(layer, request, token, required, &ctx).await,
    }
}

/// The requirement as the manager takes it.
fn scopes_of(required: &Resolved) -> Required<'_> {
    match required {
        Resolved::All(scopes) => Required::All(scopes.scopes()),
        Resolved::Any(alternatives) => Required::Any(alternatives),
    }
}

/// A token presented with the DPoP scheme: the proof verified, then the token validated with
/// it (key binding, `jti` claimed once). Without DPoP support compiled in, no request gets here
/// (the scheme is not read).
#[allow(clippy::unused_async)]
async fn proven(
    layer: &BearerAuthLayer,
    request: &Parts,
    token: &str,
    required: Resolved,
    ctx: &token_core::Context,
) -> Result<Accepted, Refusal> {
    #[cfg(feature = "dpop")]
    if let Some(settings) = &layer.config.dpop {
        let now = layer.config.manager.clock().now();
        let (proof, offer) =
            crate::dpop::verified(settings, request, token, now).map_err(|refusal| Refusal {
                kind: refusal.kind,
                required: None,
                used_dpop: true,
                nonce: refusal.nonce,
                limit: None,
            })?;
        let validated = layer
            .config
            .manager
            .validate_admitted(token, scopes_of(&required), ctx, Some(&proof), async |v| {
                admit(layer, v).await
            })
            .await;
        return answered(validated, offer, required, true);
    }
    let _ = (layer, request, token, required, ctx);
    Err(RejectionKind::MissingCredentials.into())
}
