//! Why a check or a Redis connection failed. No message carries a secret: a Redis URL's
//! password is redacted before it is stored anywhere.

/// Why a check has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The cost is more than the limit allows at once: it could never pass, so it is refused
    /// as an error rather than denied forever. The route's cost or the limit needs changing.
    #[error(
        "a cost of {cost} can never pass rate limit {limit_name:?}, which allows at most {limit} at once: lower the request's cost or raise the limit"
    )]
    CostExceedsLimit {
        /// The limit's name.
        limit_name: String,
        /// The cost asked for.
        cost: u32,
        /// The limit (its burst).
        limit: u32,
    },
    /// Redis did not answer (down, unreachable or slower than the check timeout) and the
    /// limiter is configured to [refuse](crate::RedisUnavailable::Refuse) rather than fall back
    /// to in-process limits. Answer `503 Service Unavailable`.
    #[error(
        "the shared rate limiter is unavailable ({reason}); checks are refused until Redis answers again"
    )]
    RedisUnavailable {
        /// What went wrong, without secrets.
        reason: String,
    },
}

/// Why [`RedisBackend::connect`](crate::RedisBackend::connect) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL is not a Redis URL (`redis://[user[:password]@]host[:port][/db]`,
    /// `rediss://...` or `unix:///path`).
    #[error("{url} is not a usable Redis URL: {reason}")]
    InvalidUrl {
        /// The URL, its password redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server did not accept a connection in time: check that it runs and that the host,
    /// port and credentials are right.
    #[error("could not connect to Redis at {url}: {reason}")]
    Unreachable {
        /// The URL, its password redacted.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

/// `url` with the password (between `user:` and `@`, or after `password=`) replaced by `***`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return redact_query(url);
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let redacted = match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = match userinfo.find(':') {
                Some(colon) => format!("{}:***", &userinfo[..colon]),
                None if userinfo.is_empty() => String::new(),
                // `redis://secret@host` is a password without a user name.
                None => "***".to_owned(),
            };
            format!(
                "{}{user}@{}{}",
                &url[..scheme_end],
                &authority[at + 1..],
                &rest[authority_end..]
            )
        }
        None => url.to_owned(),
    };
    redact_query(&redacted)
}

fn redact_query(url: &str) -> String {
    let Some(start) = url.find("password=").map(|i| i + "password=".len()) else {
        return url.to_owned();
    };
    let end = url[start..]
        .find(['&', '#'])
        .map_or(url.len(), |i| start + i);
    format!("{}***{}", &url[..start], &url[end..])
}

/// `text` with every occurrence of the URL's password removed (an error message from the
/// driver might quote it).
pub(crate) fn scrub(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|secret| !secret.is_empty())
        .fold(text.to_owned(), |text, secret| {
            text.replace(secret.as_str(), "***")
        })
}

/// The secrets in a URL: the userinfo password and a `password=` query value.
pub(crate) fn url_secrets(url: &str) -> Vec<String> {
    let mut secrets = Vec::new();
    if let Some(scheme_end) = url.find("://").map(|i| i + 3) {
        let rest = &url[scheme_end..];
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            secrets.push(match userinfo.find(':') {
                Some(colon) => userinfo[colon + 1..].to_owned(),
                None => userinfo.to_owned(),
            });
        }
    }
    if let Some(start) = url.find("password=").map(|i| i + "password=".len()) {
        let end = url[start..]
            .find(['&', '#'])
            .map_or(url.len(), |i| start + i);
        secrets.push(url[start..end].to_owned());
    }
    secrets.retain(|s| !s.is_empty());
    secrets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_survive_redaction() {
        for (url, shown) in [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            (
                "redis://app:hunter2@cache:6379/2",
                "redis://app:***@cache:6379/2",
            ),
            ("redis://:hunter2@cache", "redis://:***@cache"),
            ("rediss://hunter2@cache/0", "rediss://***@cache/0"),
            (
                "redis://cache/0?password=hunter2&protocol=resp3",
                "redis://cache/0?password=***&protocol=resp3",
            ),
            ("unix:///run/redis.sock", "unix:///run/redis.sock"),
        ] {
            assert_eq!(redact_url(url), shown);
            assert!(!redact_url(url).contains("hunter2"));
        }
        let secrets = url_secrets("redis://app:hunter2@cache?password=s3cret");
        assert_eq!(secrets, ["hunter2", "s3cret"]);
        assert_eq!(
            scrub("auth failed for hunter2 / s3cret", &secrets),
            "auth failed for *** / ***"
        );
    }
}
