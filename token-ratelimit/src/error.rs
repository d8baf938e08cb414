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

/// `url` for printing: token-core's [`redacted_url`](token_core::redact::redacted_url) (the
/// user-info password and `password`/`pass` parameters hidden; everything after the scheme when
/// an unencoded `/`, `?` or `#` in a password makes the URL ambiguous).
pub(crate) fn redact_url(url: &str) -> String {
    token_core::redact::redacted_url(url)
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

/// The secrets in a URL, to scrub from a driver's messages: the user-info password (up to the
/// last `@`, so a password holding an unencoded `/`, `?` or `#` is still found whole) and the
/// value of every password query parameter (`password=`, `pass=`), longest first.
pub(crate) fn url_secrets(url: &str) -> Vec<String> {
    let mut secrets = Vec::new();
    if let Some((_, rest)) = url.split_once("://")
        && let Some((userinfo, _)) = rest.rsplit_once('@')
    {
        secrets.push(match userinfo.split_once(':') {
            Some((_, password)) => password.to_owned(),
            None => userinfo.to_owned(),
        });
    }
    if let Some((_, query)) = url.split_once('?') {
        let query = query.split('#').next().unwrap_or_default();
        for pair in query.split('&') {
            if let Some((name, value)) = pair.split_once('=')
                && token_core::redact::names_a_password(name)
            {
                secrets.push(value.to_owned());
            }
        }
    }
    secrets.retain(|s| !s.is_empty());
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
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
            // A user name alone (redis-rs sends no password then) is shown, as for databases.
            ("rediss://app@cache/0", "rediss://app@cache/0"),
            (
                "redis://cache/0?password=hunter2&protocol=resp3",
                "redis://cache/0?password=***&protocol=resp3",
            ),
            ("unix:///run/redis.sock", "unix:///run/redis.sock"),
            (
                "unix:///run/redis.sock?pass=hunter2",
                "unix:///run/redis.sock?pass=***",
            ),
            ("redis://app:hun/ter2@cache", "redis://***"),
            ("redis://app:hunter2?x@cache", "redis://***"),
        ] {
            assert_eq!(redact_url(url), shown);
            assert!(!redact_url(url).contains("hunter2"));
        }
        let secrets = url_secrets("redis://app:hunter2@cache?password=s3cret");
        assert_eq!(secrets, ["hunter2", "s3cret"]);
        assert_eq!(url_secrets("redis://app:hun/ter2@cache"), ["hun/ter2"]);
        assert_eq!(
            url_secrets("unix:///run/redis.sock?db=1&pass=hunter2"),
            ["hunter2"]
        );
        assert_eq!(
            scrub("auth failed for hunter2 / s3cret", &secrets),
            "auth failed for *** / ***"
        );
    }
}
