//! The `htu` comparison: a small RFC 3986 normalizer for absolute `http`/`https` URIs.
//!
//! Both the proof's `htu` and the server's request URI go through [`normalize`], and the results
//! are compared as strings. Normalization (RFC 3986 sections 6.2.2 and 6.2.3):
//! - the query and the fragment are dropped (RFC 9449 section 4.3, check 9);
//! - the scheme and the host are lower-cased (6.2.2.1);
//! - percent-encodings get upper-case hex digits, and encoded unreserved characters
//!   (`A-Z a-z 0-9 - . _ ~`) are decoded (6.2.2.1, 6.2.2.2);
//! - `.` and `..` path segments are removed (6.2.2.3);
//! - an empty port and the scheme's default port (80 for `http`, 443 for `https`) are removed,
//!   and an empty path becomes `/` (6.2.3).
//!
//! Anything else is compared exactly. URIs that are not absolute `http`/`https` URIs with an
//! authority, or that contain characters a URI cannot (controls, spaces, non-ASCII, a bad
//! percent-encoding), do not normalize at all.

/// The normalized form of `uri`, or `None` when it is not an absolute `http`/`https` URI.
pub(crate) fn normalize(uri: &str) -> Option<String> {
    if !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    // Query and fragment never take part: cut at the first `?` or `#` (neither can appear
    // unencoded in the scheme, authority or path).
    let uri = match uri.find(['?', '#']) {
        Some(end) => &uri[..end],
        None => uri,
    };
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port: u16 = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(start) => rest.split_at(start),
        None => (rest, ""),
    };
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => (Some(userinfo), host_port),
        None => (None, authority),
    };
    let (host, port) = split_port(host_port)?;
    if host.is_empty() {
        return None;
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }

    let mut out = String::with_capacity(uri.len() + 1);
    out.push_str(&scheme);
    out.push_str("://");
    if let Some(userinfo) = userinfo {
        push_normalized(&mut out, userinfo, false)?;
        out.push('@');
    }
    push_normalized(&mut out, host, true)?;
    if !port.is_empty() {
        let digits = port.trim_start_matches('0');
        if digits.len() > 5 {
            return None;
        }
        let port: u16 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        if port != default_port {
            out.push(':');
            out.push_str(&port.to_string());
        }
    }
    let mut normalized_path = String::with_capacity(path.len() + 1);
    push_normalized(&mut normalized_path, path, false)?;
    let path = remove_dot_segments(&normalized_path);
    if path.is_empty() {
        out.push('/');
    } else {
        out.push_str(&path);
    }
    Some(out)
}

/// Splits `host[:port]`, where the host may be an IP literal in brackets.
fn split_port(host_port: &str) -> Option<(&str, &str)> {
    if host_port.starts_with('[') {
        let end = host_port.find(']')?;
        let (host, after) = host_port.split_at(end + 1);
        match after.strip_prefix(':') {
            Some(port) => Some((host, port)),
            None if after.is_empty() => Some((host, "")),
            None => None,
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => Some((host, port)),
            None => Some((host_port, "")),
        }
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Appends `part` with percent-encodings normalized; lower-cases it when `lower` (the host).
fn push_normalized(out: &mut String, part: &str, lower: bool) -> Option<()> {
    let bytes = part.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let high = hex_value(*bytes.get(i + 1)?)?;
            let low = hex_value(*bytes.get(i + 2)?)?;
            let decoded = high << 4 | low;
            if is_unreserved(decoded) {
                let c = if lower {
                    decoded.to_ascii_lowercase()
                } else {
                    decoded
                };
                out.push(char::from(c));
            } else {
                out.push('%');
                out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
                out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
            }
            i += 3;
        } else {
            let c = if lower { b.to_ascii_lowercase() } else { b };
            out.push(char::from(c));
            i += 1;
        }
    }
    Some(())
}

/// RFC 3986 section 5.2.4, for an absolute path (or an empty one).
fn remove_dot_segments(path: &str) -> String {
    let mut output: Vec<&str> = Vec::new();
    let mut input = path;
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest;
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest;
        } else if input.starts_with("/./") {
            input = &input[2..];
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") {
            input = &input[3..];
            output.pop();
        } else if input == "/.." {
            input = "/";
            output.pop();
        } else if input == "." || input == ".." {
            input = "";
        } else {
            // Move the first segment (with its leading `/`, if any) to the output.
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            output.push(&input[..end]);
            input = &input[end..];
        }
    }
    output.concat()
}

#[cfg(test)]
mod tests {
    use super::normalize;

    fn n(uri: &str) -> String {
        normalize(uri).unwrap_or_else(|| panic!("{uri} should normalize"))
    }

    #[test]
    fn scheme_and_host_case_are_normalized() {
        assert_eq!(
            n("HTTPS://Server.EXAMPLE.com/Path"),
            "https://server.example.com/Path"
        );
    }

    #[test]
    fn default_and_empty_ports_are_removed() {
        assert_eq!(n("https://a.example:443/x"), "https://a.example/x");
        assert_eq!(n("http://a.example:80/x"), "http://a.example/x");
        assert_eq!(n("http://a.example:/x"), "http://a.example/x");
        assert_eq!(n("http://a.example:0080/x"), "http://a.example/x");
        assert_eq!(n("https://a.example:80/x"), "https://a.example:80/x");
        assert_eq!(n("http://a.example:8080"), "http://a.example:8080/");
        assert_eq!(n("http://a.example:0/"), "http://a.example:0/");
    }

    #[test]
    fn empty_path_is_slash() {
        assert_eq!(n("https://a.example"), "https://a.example/");
        assert_eq!(n("https://a.example?q=1"), "https://a.example/");
    }

    #[test]
    fn query_and_fragment_are_dropped() {
        assert_eq!(n("https://a.example/p?x=1#frag"), "https://a.example/p");
        assert_eq!(n("https://a.example/p#frag?x"), "https://a.example/p");
    }

    #[test]
    fn percent_encoding_is_normalized() {
        assert_eq!(
            n("https://a.example/%7euser/%2f%C3%a9"),
            "https://a.example/~user/%2F%C3%A9"
        );
        assert_eq!(n("https://%41.example/"), "https://a.example/");
        assert_eq!(normalize("https://a.example/%zz"), None);
        assert_eq!(normalize("https://a.example/%4"), None);
    }

    #[test]
    fn dot_segments_are_removed() {
        assert_eq!(n("https://a.example/a/./b/../c"), "https://a.example/a/c");
        assert_eq!(n("https://a.example/../../x"), "https://a.example/x");
        assert_eq!(n("https://a.example/a/.."), "https://a.example/");
        assert_eq!(n("https://a.example/a/%2E%2E/b"), "https://a.example/b");
    }

    #[test]
    fn ip_literals_and_userinfo_are_kept() {
        assert_eq!(n("http://[::1]:80/x"), "http://[::1]/x");
        assert_eq!(n("http://[FE80::1]:8080/"), "http://[fe80::1]:8080/");
        assert_eq!(n("http://User@a.example/"), "http://User@a.example/");
    }

    #[test]
    fn non_http_and_broken_uris_do_not_normalize() {
        for uri in [
            "",
            "/relative/path",
            "a.example/x",
            "ftp://a.example/",
            "https:///x",
            "https://a.example:99999/",
            "https://a.example:8x/",
            "https://a example/",
            "https://a.example/\u{e9}",
            "http://[::1/",
            "http://[::1]x/",
        ] {
            assert_eq!(normalize(uri), None, "{uri:?}");
        }
    }
}
