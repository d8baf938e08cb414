//! The [`Service`] that authenticates each request.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use http::header::AUTHORIZATION;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use token_core::{ErrorClass, ValidatedToken};
use tower_service::Service;

use crate::rejection::{self, Rejection, RejectionKind, Renderer};
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
            match authenticate(&layer, &parts).await {
                Ok(Some(identity)) => {
                    parts.extensions.insert(Authenticated(identity));
                }
                Ok(None) => {
                    parts.extensions.insert(Anonymous);
                }
                Err(refusal) => {
                    let scopes = refusal.required.as_ref().map_or(&[][..], Resolved::scopes);
                    let any_of = refusal.required.as_ref().is_some_and(Resolved::is_any);
                    let status = match refusal.kind {
                        RejectionKind::InsufficientScope => layer.scope_status,
                        RejectionKind::InvalidRequest => StatusCode::BAD_REQUEST,
                        RejectionKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                        _ => StatusCode::UNAUTHORIZED,
                    };
                    let rejection = Rejection::new(refusal.kind, status, scopes, any_of);
                    let renderer = Renderer(layer.config.renderer.clone());
                    return Ok(rejection::respond(
                        &rejection,
                        &layer.config.realm,
                        &renderer,
                    ));
                }
            }
            inner.call(Request::from_parts(parts, body)).await
        })
    }
}

/// A refusal and, once known, the requirement it was checked against.
struct Refusal {
    kind: RejectionKind,
    required: Option<Resolved>,
}

impl From<RejectionKind> for Refusal {
    fn from(kind: RejectionKind) -> Self {
        Self {
            kind,
            required: None,
        }
    }
}

/// The identity, `None` for an anonymous request an optional layer lets through.
async fn authenticate(
    layer: &BearerAuthLayer,
    request: &Parts,
) -> Result<Option<ValidatedToken>, Refusal> {
    let config = &layer.config;
    let Some(token) = credential::credential(request, config.api_key_header.as_ref())? else {
        return match layer.anonymous {
            AnonymousRequests::Allowed => Ok(None),
            AnonymousRequests::Refused => Err(RejectionKind::MissingCredentials.into()),
        };
    };
    let required = layer
        .required
        .resolve(request)
        .ok_or(RejectionKind::InvalidRequest)?;
    let ctx = context::context_of(config, request);
    let validated = match &required {
        Resolved::All(scopes) => config.manager.validate_with(token, scopes, &ctx).await,
        Resolved::Any(alternatives) => {
            config
                .manager
                .validate_any_with(token, alternatives, &ctx)
                .await
        }
    };
    match validated {
        Ok(identity) => Ok(Some(identity)),
        Err(e) => Err(Refusal {
            kind: match e.class() {
                ErrorClass::InsufficientScope => RejectionKind::InsufficientScope,
                ErrorClass::InvalidToken => RejectionKind::InvalidToken,
                _ => RejectionKind::Unavailable,
            },
            required: Some(required),
        }),
    }
}
