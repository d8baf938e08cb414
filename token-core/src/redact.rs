//! Connection URLs (databases, Redis) without their secrets, for `Debug`, logs and error
//! messages. Stores, `token-ratelimit` and the programs print every URL through
//! [`redacted_url`].

/// What a hidden secret is shown as.
const HIDDEN: &str = "***";

/// `url` for printing (a log line, a `Debug`, an error message): the password of the user info
/// and the value of any query parameter whose name contains `password` or is `pass` (Redis's
/// `unix://` form) become `***`; the rest is kept. When the user info
/// cannot be told apart with certainty (a `:` then an `@` after the authority, a port that is not
/// a number: signs of an unencoded `/`, `?` or `#` in a password), everything after the scheme is
/// hidden.
///
/// ```
/// use token_core::redact::redacted_url;
///
/// assert_eq!(redacted_url("postgres://app:s3cr3t@db/app"), "postgres://app:***@db/app");
/// assert_eq!(redacted_url("sqlite://tokens.db"), "sqlite://tokens.db");
/// assert_eq!(redacted_url("unix:///run/redis.sock?db=1&pass=s3cr3t"), "unix:///run/redis.sock?db=1&pass=***");
/// assert_eq!(redacted_url("redis://app:s3/cr3t@cache"), "redis://***");
/// ```
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // No authority (`postgres:`, `sqlite:tokens.db`): only the query can hold a password,
        // unless the string is not a URL at all (`user:password@host`).
        return if url.contains('@') {
            hidden(url.split_once(':').map(|(scheme, _)| scheme), ":")
        } else {
            redact_query(url)
        };
    };
    if !is_scheme(scheme) {
        return HIDDEN.to_owned();
    }
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let (user_info, host) = match authority.rsplit_once('@') {
        Some((user_info, host)) => (Some(user_info), host),
        None => (None, authority),
    };
    let after_ipv6 = host.rsplit_once(']').map_or(host, |(_, after)| after);
    let bad_port = after_ipv6
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.bytes().all(|b| b.is_ascii_digit()));
    // With no `@` in the authority, an `@` after it that follows a `:` may end a password that
    // holds a `/`, `?` or `#`.
    let ambiguous = user_info.is_none()
        && rest
            .rsplit_once('@')
            .is_some_and(|(before, _)| before.contains(':'));
    if bad_port || ambiguous {
        return hidden(Some(scheme), "://");
    }
    let mut out = format!("{scheme}://");
    if let Some(user_info) = user_info {
        match user_info.split_once(':') {
            Some((user, _)) => out.push_str(&format!("{user}:{HIDDEN}@")),
            None => out.push_str(&format!("{user_info}@")),
        }
    }
    out.push_str(host);
    out.push_str(&redact_query(tail));
    out
}

/// `scheme` + `separator` + `***`, or `***` alone when `scheme` is not one.
fn hidden(scheme: Option<&str>, separator: &str) -> String {
    match scheme {
        Some(scheme) if is_scheme(scheme) => format!("{scheme}{separator}{HIDDEN}"),
        _ => HIDDEN.to_owned(),
    }
}

/// RFC 3986 `scheme`: a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_alphabetic())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// `text` (a path, query and fragment) with the value of every query parameter whose name,
/// percent-decoded and in any case, contains `password` or is `pass` replaced by `***`.
fn redact_query(text: &str) -> String {
    let Some((before, after)) = text.split_once('?') else {
        return text.to_owned();
    };
    let (query, fragment) = after.split_at(after.find('#').unwrap_or(after.len()));
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if names_a_password(name) => format!("{name}={HIDDEN}"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{before}?{}{fragment}", pairs.join("&"))
}

/// Whether a query parameter's name (percent-decoded, any case) names a password.
pub fn names_a_password(name: &str) -> bool {
    let bytes = name.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let escaped = bytes
            .get(i + 1..i + 3)
            .filter(|hex| byte == b'%' && hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(escaped) => {
                decoded.push(escaped);
                i += 3;
            }
            None => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    let name = String::from_utf8_lossy(&decoded).to_ascii_lowercase();
    name.contains("password") || name == "pass"
}

#[cfg(test)]
mod tests {
    use super::redacted_url;

    #[test]
    fn the_user_info_password_is_hidden_and_the_rest_kept() {
        for (url, shown) in [
            (
                "postgres://app:s3cr3t@db:5432/x",
                "postgres://app:***@db:5432/x",
            ),
            ("mysql://app:s3cr3t-pw@db/x", "mysql://app:***@db/x"),
            (
                "postgres://app:p%40ss@db/x?sslmode=require#f",
                "postgres://app:***@db/x?sslmode=require#f",
            ),
            ("postgres://app:p@ss@db/x", "postgres://app:***@db/x"),
            ("postgres://a@b:pw@db/x", "postgres://a@b:***@db/x"),
            (
                "postgres://:s3cr3t@[::1]:5432/x",
                "postgres://:***@[::1]:5432/x",
            ),
        ] {
            assert_eq!(redacted_url(url), shown, "{url}");
        }
    }

    #[test]
    fn urls_without_a_password_are_unchanged() {
        for url in [
            "postgres://app@db/x",
            "postgres://db",
            "postgresql:///x?host=/run/postgresql",
            "sqlite://token-example.db",
            "sqlite:///tmp/a@b/tokens.db",
            "sqlite::memory:",
            "",
        ] {
            assert_eq!(redacted_url(url), url);
        }
    }

    #[test]
    fn password_parameters_are_hidden() {
        assert_eq!(
            redacted_url("unix:///run/redis.sock?pass=s3cr3t&db=2"),
            "unix:///run/redis.sock?pass=***&db=2"
        );
        assert_eq!(
            redacted_url("redis://cache/0?PASS=s3cr3t&passport=kept"),
            "redis://cache/0?PASS=***&passport=kept"
        );
        assert_eq!(
            redacted_url("postgres://db/x?user=app&password=s3cr3t&sslpassword=k&pass%77ord=q"),
            "postgres://db/x?user=app&password=***&sslpassword=***&pass%77ord=***"
        );
    }

    #[test]
    fn ambiguous_or_unparsable_strings_keep_only_their_scheme() {
        for (url, shown) in [
            // An unencoded '/', '?' or '#' in the password ends the authority early.
            ("postgres://app:s3/cr3t@db/x", "postgres://***"),
            ("postgres://app:1/s3cr3t@db/x", "postgres://***"),
            ("postgres://app:s3?cr3t@db/x", "postgres://***"),
            ("postgres://app:s3cr3t", "postgres://***"),
            ("app:s3cr3t@db", "app:***"),
            ("not a url:s3cr3t@db://x", "***"),
            ("@:s3cr3t@", "***"),
        ] {
            assert_eq!(redacted_url(url), shown, "{url}");
        }
    }
}
