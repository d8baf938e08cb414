//! Where the credential comes from: `Authorization: Bearer`, or an API key header if enabled.

use http::HeaderName;
use http::header::AUTHORIZATION;
use http::request::Parts;

use crate::rejection::RejectionKind;

/// How a request presented its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `Authorization: Bearer` or the API key header.
    Bearer,
    /// `Authorization: DPoP` (with a `DPoP` proof header, RFC 9449).
    Dpop,
}

/// The one credential of a request and how it came: `Ok(None)` when it carries none.
///
/// A request may carry exactly one: a token in both `Authorization` and the API key header,
/// either header twice, or `access_token` in the query string is `invalid_request`. The `DPoP`
/// scheme is read only when `dpop` is accepted (otherwise it is another scheme, as `Basic` is).
pub(crate) fn credential<'a>(
    request: &'a Parts,
    api_key_header: Option<&HeaderName>,
    dpop: bool,
) -> Result<Option<(&'a str, Scheme)>, RejectionKind> {
    if query_has_access_token(request.uri.query()) {
        return Err(RejectionKind::InvalidRequest);
    }
    let authorization = authorization_token(request, dpop)?;
    let api_key = match api_key_header {
        Some(name) => api_key(request, name)?.map(|token| (token, Scheme::Bearer)),
        None => None,
    };
    match (authorization, api_key) {
        (Some(_), Some(_)) => Err(RejectionKind::InvalidRequest),
        (token, None) | (None, token) => Ok(token),
    }
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub(crate) fn is_b64token(token: &str) -> bool {
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

/// The token of the `Authorization` header and its scheme; `None` when there is no header or it
/// names another scheme (the client did not attempt bearer or DPoP authentication).
fn authorization_token(
    request: &Parts,
    dpop: bool,
) -> Result<Option<(&str, Scheme)>, RejectionKind> {
    let Some(value) = single(request, &AUTHORIZATION)? else {
        return Ok(None);
    };
    if value.is_empty() {
        return Err(RejectionKind::InvalidRequest);
    }
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if is_garbled_bearer(scheme) {
        return Err(RejectionKind::InvalidRequest);
    }
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if dpop && scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Ok(None);
    };
    let token = rest.trim_start_matches(' ');
    if !is_b64token(token) {
        return Err(RejectionKind::InvalidRequest);
    }
    Ok(Some((token, scheme)))
}

/// The token of the API key header: the whole value, a `b64token` (no scheme).
fn api_key<'a>(request: &'a Parts, name: &HeaderName) -> Result<Option<&'a str>, RejectionKind> {
    match single(request, name)? {
        None => Ok(None),
        Some(token) if is_b64token(token) => Ok(Some(token)),
        Some(_) => Err(RejectionKind::InvalidRequest),
    }
}

/// The one value of header `name`, trimmed of spaces and tabs; a repeated or non-ASCII header is
/// `invalid_request`.
pub(crate) fn single<'a>(
    request: &'a Parts,
    name: &HeaderName,
) -> Result<Option<&'a str>, RejectionKind> {
    let mut values = request.headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(RejectionKind::InvalidRequest);
    }
    let value = value
        .to_str()
        .map_err(|_| RejectionKind::InvalidRequest)?
        .trim_matches([' ', '\t']);
    Ok(Some(value))
}

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
    fn query_detection_is_exact() {
        assert!(query_has_access_token(Some("a=1&access_token=x")));
        assert!(query_has_access_token(Some("access_token")));
        assert!(!query_has_access_token(Some("my_access_token=x")));
        assert!(!query_has_access_token(None));
    }
}
