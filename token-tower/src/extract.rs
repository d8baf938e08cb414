//! The axum extractors: `Authenticated` and `Option<Authenticated>`.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::{Anonymous, Authenticated};

/// Rejection of the [`Authenticated`] extractor: the route has no `BearerAuthLayer` (or, for a
/// plain `Authenticated`, only an optional one and the request had no credential).
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

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Authenticated>()
            .cloned()
            .ok_or(MissingAuthLayer)
    }
}

/// `None` only for a request an [optional](crate::BearerAuthLayer::optional) layer let through
/// without credentials; a route with no layer at all is still a 500.
impl<S: Send + Sync> OptionalFromRequestParts<S> for Authenticated {
    type Rejection = MissingAuthLayer;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        if let Some(who) = parts.extensions.get::<Authenticated>() {
            return Ok(Some(who.clone()));
        }
        match parts.extensions.get::<Anonymous>() {
            Some(_) => Ok(None),
            None => Err(MissingAuthLayer),
        }
    }
}
