//! The example server's OAuth 2.0 endpoints: token revocation by possession (RFC 7009) and
//! introspection (RFC 7662), each reading one `token` from a bounded form body. See
//! [`server`](crate::server) for the contract.

use axum::Form;
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use token_core::Error;

use crate::server::{ApiError, AppState, OAUTH_BODY_LIMIT, no_store};

/// The body of both OAuth endpoints. Unknown parameters are ignored (serde's default), which
/// covers `token_type_hint`; a repeated `token` is a deserialization error.
#[derive(Deserialize)]
pub(crate) struct TokenForm {
    token: Option<String>,
}

/// The presented token, or the RFC 6749 §5.2 error response for a body that does not carry
/// exactly one. Rejection texts are not echoed: they could quote the body.
fn presented_token(form: Result<Form<TokenForm>, FormRejection>) -> Result<String, ApiError> {
    match form {
        Ok(Form(TokenForm { token: Some(token) })) => Ok(token),
        Ok(Form(TokenForm { token: None })) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "missing token parameter",
        )),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                format!("the request body is larger than {OAUTH_BODY_LIMIT} bytes"),
            ))
        }
        Err(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected an application/x-www-form-urlencoded body with one token parameter",
        )),
    }
}

/// RFC 7009: possession of a token is enough to revoke it; 200 for unknown tokens too, and an
/// unknown `token_type_hint` is ignored.
pub(crate) async fn oauth_revoke(
    State(state): State<AppState>,
    parts: Parts,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    let token = match presented_token(form) {
        Ok(token) => token,
        Err(error) => return error.into_response(),
    };
    let ctx = state
        .auth
        .context_of(&parts)
        .actor("oauth-revocation-endpoint");
    match state
        .manager
        .revoke_presented(&token, "revoked by its holder (RFC 7009)", &ctx)
        .await
    {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// RFC 7662: details of an active token, else exactly `{"active": false}`.
pub(crate) async fn introspect(
    State(state): State<AppState>,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    let token = match presented_token(form) {
        Ok(token) => token,
        Err(error) => return error.into_response(),
    };
    match state.manager.introspect(&token).await {
        Ok(Some(active)) => {
            let r = active.record();
            let mut body = json!({
                "active": true,
                "scope": r.scopes.to_string(),
                "sub": r.subject,
                "iat": r.created_at.unix_timestamp(),
                "jti": r.id,
                "token_type": if r.dpop_jkt.is_some() { "DPoP" } else { "Bearer" },
            });
            // RFC 9449 section 6.2: the key a bound token is confirmed with.
            if let Some(jkt) = &r.dpop_jkt {
                body["cnf"] = json!({ "jkt": jkt });
            }
            // Introspection does not know the resource server's caller: a token pinned to
            // networks says so, and the resource server must enforce it.
            if let Some(networks) = &r.allowed_networks {
                body["allowed_cidrs"] = json!(networks.networks().collect::<Vec<_>>());
            }
            if let Some(exp) = r.expires_at {
                body["exp"] = json!(exp.unix_timestamp());
            }
            if let Some(nbf) = r.not_before {
                body["nbf"] = json!(nbf.unix_timestamp());
            }
            no_store(Json(body))
        }
        Ok(None) => no_store(Json(json!({"active": false}))),
        Err(e) => ApiError::from(Error::from(e)).into_response(),
    }
}
