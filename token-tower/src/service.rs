//! The [`Service`] that authenticates each request.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use http::header::AUTHORIZATION;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use token_core::{ErrorClass, ValidatedToken, ValidationError};
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
                Ok(Accepted { identity, offer }) => {
                    #[cfg_attr(not(feature = "ratelimit"), allow(unused_mut))]
                    let mut limit_fields = http::HeaderMap::new();
                    match identity {
                        Some(identity) => {
                            #[cfg(feature = "ratelimit")]
                            if let Some(limiter) = &layer.config.ratelimit {
                                match crate::ratelimit::check(limiter, &identity, layer.cost).await
                                {
                                    crate::ratelimit::Verdict::Pass(fields) => {
                                        limit_fields = fields;
                                    }
                                    crate::ratelimit::Verdict::Refuse {
                                        kind,
                                        limited,
                                        headers,
                                    } => {
                                        let refusal = Refusal::from(kind);
                                        return Ok(refuse(
                                            &layer,
                                            refusal,
                                            limited.as_ref(),
                                            headers,
                                        ));
                                    }
                                }
                            }
                            parts.extensions.insert(Authenticated(identity));
                        }
                        None => {
                            parts.extensions.insert(Anonymous);
                        }
                    }
                    (offer, limit_fields)
                }
                Err(refusal) => {
                    return Ok(refuse(&layer, refusal, None, http::HeaderMap::new()));
                }
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
/// body and `extra` fields (a 429's rate-limit fields).
fn refuse<B: Default + 'static>(
    layer: &BearerAuthLayer,
    refusal: Refusal,
    limited: Option<&rejection::Limited>,
    extra: http::HeaderMap,
) -> Response<B> {
    let scopes = refusal.required.as_ref().map_or(&[][..], Resolved::scopes);
    let any_of = refusal.required.as_ref().is_some_and(Resolved::is_any);
    let status = match refusal.kind {
        RejectionKind::InsufficientScope => layer.scope_status,
        RejectionKind::InvalidRequest => StatusCode::BAD_REQUEST,
        RejectionKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        RejectionKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::UNAUTHORIZED,
    };
    let rejection = Rejection::new(refusal.kind, status, scopes, any_of).limited(limited);
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
/// layer lets through) and a fresh DPoP nonce to offer.
struct Accepted {
    identity: Option<ValidatedToken>,
    offer: Option<String>,
}

/// A refusal and, once known, the requirement it was checked against.
struct Refusal {
    kind: RejectionKind,
    required: Option<Resolved>,
    /// The request used the `DPoP` scheme.
    used_dpop: bool,
    /// A fresh DPoP nonce to send with the refusal.
    nonce: Option<String>,
}

impl From<RejectionKind> for Refusal {
    fn from(kind: RejectionKind) -> Self {
        Self {
            kind,
            required: None,
            used_dpop: false,
            nonce: None,
        }
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
    let (validated, offer) = match scheme {
        Scheme::Bearer => {
            let validated = match &required {
                Resolved::All(scopes) => config.manager.validate_with(token, scopes, &ctx).await,
                Resolved::Any(alternatives) => {
                    config
                        .manager
                        .validate_any_with(token, alternatives, &ctx)
                        .await
                }
            };
            (validated, None)
        }
        Scheme::Dpop => proven(config, request, token, &required, &ctx).await?,
    };
    match validated {
        Ok(identity) => Ok(Accepted {
            identity: Some(identity),
            offer,
        }),
        Err(e) => Err(Refusal {
            kind: match (&e, e.class()) {
                (ValidationError::ProofReplayed, _) => RejectionKind::InvalidDpopProof,
                (_, ErrorClass::InsufficientScope) => RejectionKind::InsufficientScope,
                (_, ErrorClass::InvalidToken) => RejectionKind::InvalidToken,
                _ => RejectionKind::Unavailable,
            },
            required: Some(required),
            used_dpop: scheme == Scheme::Dpop,
            nonce: None,
        }),
    }
}

/// A token presented with the DPoP scheme: the proof verified, then the token validated with
/// it (key binding, `jti` claimed once). Without DPoP support compiled in, no request gets here
/// (the scheme is not read).
#[allow(clippy::unused_async)]
async fn proven(
    config: &crate::Config,
    request: &Parts,
    token: &str,
    required: &Resolved,
    ctx: &token_core::Context,
) -> Result<(Result<ValidatedToken, ValidationError>, Option<String>), Refusal> {
    #[cfg(feature = "dpop")]
    if let Some(settings) = &config.dpop {
        let now = config.manager.clock().now();
        let (proof, offer) =
            crate::dpop::verified(settings, request, token, now).map_err(|refusal| Refusal {
                kind: refusal.kind,
                required: None,
                used_dpop: true,
                nonce: refusal.nonce,
            })?;
        let validated = match required {
            Resolved::All(scopes) => {
                config
                    .manager
                    .validate_with_proof(token, scopes, ctx, &proof)
                    .await
            }
            Resolved::Any(alternatives) => {
                config
                    .manager
                    .validate_any_with_proof(token, alternatives, ctx, &proof)
                    .await
            }
        };
        return Ok((validated, offer));
    }
    let _ = (config, request, token, required, ctx);
    Err(RejectionKind::MissingCredentials.into())
}
