//! The leaked-token scanner: finds tokens in text by the documented pattern, confirms each with
//! the library's parser (CRC and canonical encoding: [`token_core::parse_token`]), and looks
//! inside URL encoding, JSON string escapes and base64 runs.
//!
//! What it reports is a [`Hit`]: where (line and column), the prefix, the public id and the
//! encoding. The token string itself is kept (zeroized on drop) only so the caller can check or
//! revoke it; no `Debug`, `Display` or serialization shows it.

use std::fmt;

use regex::bytes::Regex;
use serde::Serialize;
use token_core::{TokenId, TokenPrefix, parse_token};
use zeroize::Zeroizing;

pub mod decode;
pub mod report;
pub mod walk;

/// The documented scanner pattern (`token_core::format`, the README), with ASCII word
/// boundaries so non-ASCII text next to a token counts as a separator.
pub const TOKEN_PATTERN: &str =
    r"\b([a-z][a-z0-9_]{0,31})_([0-9A-Za-z]{22})([0-9A-Za-z]{43})([0-9A-Za-z]{6})\b";

/// Where the scanner found a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Encoding {
    /// As is.
    Plain,
    /// Percent-encoded (`%3D`, `+`): in a URL, a query string, a form body.
    Url,
    /// Inside a JSON string with escapes (`\n`, `\u005f`).
    JsonEscape,
    /// Inside base64 (a base64-encoded line, a Kubernetes secret, a basic-auth header); the
    /// position is the start of the base64 run.
    Base64,
}

impl Encoding {
    /// Lower-case name, as in the JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Url => "url",
            Self::JsonEscape => "json_escape",
            Self::Base64 => "base64",
        }
    }
}

/// A confirmed token found in a text.
pub struct Hit {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in Unicode code points (bytes where the line is not UTF-8).
    pub column: usize,
    /// Byte offset in the text.
    pub offset: usize,
    /// The token's prefix.
    pub prefix: String,
    /// The token's public id.
    pub id: TokenId,
    /// How it was encoded where it was found.
    pub encoding: Encoding,
    token: Zeroizing<String>,
}

impl Hit {
    /// The whole token string, to check or revoke it. Never print it.
    pub fn expose_token(&self) -> &str {
        &self.token
    }
}

impl fmt::Debug for Hit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hit")
            .field("line", &self.line)
            .field("column", &self.column)
            .field("prefix", &self.prefix)
            .field("id", &self.id)
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

/// Which prefixes a [`Scanner`] reports.
#[derive(Debug, Clone)]
pub enum PrefixFilter {
    /// Every prefix.
    Any,
    /// Only this one. A match whose prefix ends with `_<prefix>` (`config_acme_live_...`: the
    /// pattern's prefix group also takes a word glued in front) is reported as this prefix.
    Only(TokenPrefix),
}

/// Finds tokens in text.
///
/// How it stays fast on large inputs: a token always holds its body, `_` and 71 base62
/// characters, literally (only a fully percent-encoded or `\u005f`-escaped token does not). So
/// the scanner looks for bodies (a search that starts at each `_`), runs the documented pattern
/// around each one, and decodes only the lines where that fails (an escaped neighbour:
/// `%3Dacme_...`, `\nacme_...`) or where an escaped separator (`%5F`, `\u005f`) stands. Base64
/// runs of 100+ characters are decoded and scanned the same way. Inputs over 8 MiB are split at
/// line ends and scanned on every core.
///
/// ```
/// use token_cli::scan::{PrefixFilter, Scanner};
/// use token_core::{PlaintextToken, TokenPrefix};
///
/// let prefix = TokenPrefix::new("acme_live")?;
/// let token = PlaintextToken::generate(&prefix)?;
/// let text = format!("API_KEY={}\nnot_a_token_at_all\n", token.expose_secret());
/// let hits = Scanner::new(PrefixFilter::Only(prefix)).scan(text.as_bytes());
/// assert_eq!(hits.len(), 1);
/// assert_eq!((hits[0].line, hits[0].column), (1, 9));
/// assert_eq!(hits[0].id, token.id());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Scanner {
    token: Regex,
    body: Regex,
    escaped_separator: Regex,
    prefix: PrefixFilter,
}

/// A candidate before line and column are known.
struct Candidate {
    offset: usize,
    prefix: String,
    id: TokenId,
    encoding: Encoding,
    token: Zeroizing<String>,
}

/// Inputs larger than this are split across threads.
const PARALLEL_CHUNK: usize = 8 * 1024 * 1024;

/// Bytes that may appear in a base64 run (standard and URL-safe alphabets).
const BASE64_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'-' | b'_');
        b += 1;
    }
    table
};

type Emit<'a> = dyn FnMut(usize, String, TokenId, Zeroizing<String>) + 'a;

impl Scanner {
    /// A scanner reporting the prefixes `prefix` allows.
    pub fn new(prefix: PrefixFilter) -> Self {
        let compile = |pattern: &str| match Regex::new(pattern) {
            Ok(regex) => regex,
            // The patterns are constants, covered by the unit tests.
            Err(e) => unreachable!("invalid built-in pattern: {e}"),
        };
        Self {
            token: compile(&format!("(?-u){TOKEN_PATTERN}")),
            body: compile(&format!(
                "(?-u)_[0-9A-Za-z]{{{}}}",
                token_core::format::BODY_CHARS
            )),
            escaped_separator: compile(r"(?i-u)%5f|\\u005f"),
            prefix,
        }
    }

    /// Every confirmed token in `text`, in order of position; a token found both as is and
    /// decoded is reported once (as is).
    pub fn scan(&self, text: &[u8]) -> Vec<Hit> {
        let mut found = Vec::new();
        let chunks = split_at_lines(text, PARALLEL_CHUNK);
        if chunks.len() == 1 {
            self.candidates(text, 0, &mut found);
        } else {
            std::thread::scope(|scope| {
                let workers: Vec<_> = chunks
                    .iter()
                    .map(|&(start, end)| {
                        scope.spawn(move || {
                            let mut out = Vec::new();
                            self.candidates(&text[start..end], start, &mut out);
                            out
                        })
                    })
                    .collect();
                for worker in workers {
                    match worker.join() {
                        Ok(part) => found.extend(part),
                        Err(panic) => std::panic::resume_unwind(panic),
                    }
                }
            });
        }
        found.sort_by_key(|c| (c.offset, c.id, c.encoding));
        // One token seen twice (as is and decoded, or with a word glued in front): keep the
        // first report of an id whose text overlaps an earlier one's.
        found.dedup_by(|later, earlier| {
            later.id == earlier.id && later.offset < earlier.offset + earlier.token.len()
        });
        locate(text, found)
    }

    /// The candidates of one chunk (whole lines), with offsets from `base`.
    fn candidates(&self, text: &[u8], base: usize, out: &mut Vec<Candidate>) {
        self.scan_layer(text, &mut |offset, encoding, prefix, id, token| {
            out.push(Candidate {
                offset: base + offset,
                prefix,
                id,
                encoding,
                token,
            });
        });
        for (start, end) in base64_runs(text) {
            let Some(decoded) = decode::base64_run(&text[start..end]) else {
                continue;
            };
            self.scan_layer(&decoded, &mut |_, _, prefix, id, token| {
                out.push(Candidate {
                    offset: base + start,
                    prefix,
                    id,
                    encoding: Encoding::Base64,
                    token,
                });
            });
        }
    }

    /// Tokens as they stand, and in the escape decodings of the lines that may hide one.
    fn scan_layer(
        &self,
        text: &[u8],
        emit: &mut dyn FnMut(usize, Encoding, String, TokenId, Zeroizing<String>),
    ) {
        // Lines to decode, by their start: a body the pattern did not match as it stands, or
        // an escaped separator.
        let mut lines = Vec::new();
        for body in self.body.find_iter(text) {
            let from = body
                .start()
                .saturating_sub(token_core::format::PREFIX_MAX_CHARS + 1);
            // The window keeps the byte after the body, so `\b` sees the real neighbours (and
            // `find_at` those before `from`).
            let until = (body.end() + 1).min(text.len());
            let mut matched = false;
            if let Some(found) = self.token.find_at(&text[..until], from) {
                matched = self.accept(
                    found.start(),
                    found.as_bytes(),
                    &mut |offset, prefix, id, token| {
                        emit(offset, Encoding::Plain, prefix, id, token);
                    },
                );
            }
            if !matched {
                push_line(&mut lines, text, body.start());
            }
        }
        let mut separators = Vec::new();
        for escaped in self.escaped_separator.find_iter(text) {
            push_line(&mut separators, text, escaped.start());
        }
        lines.extend(separators);
        lines.sort_unstable();
        lines.dedup();
        for (start, end) in lines {
            let line = &text[start..end];
            if !line.iter().any(|b| matches!(b, b'%' | b'\\')) {
                continue;
            }
            for (encoding, decoded) in [
                (Encoding::Url, decode::percent(line)),
                (Encoding::JsonEscape, decode::json_escapes(line)),
            ] {
                let Some(decoded) = decoded else { continue };
                self.confirmed(&decoded.bytes, &mut |offset, prefix, id, token| {
                    let origin = decoded.origin.get(offset).copied().unwrap_or(0);
                    emit(start + origin, encoding, prefix, id, token);
                });
            }
        }
    }

    /// Pattern matches in `text` that [`accept`](Self::accept) keeps.
    fn confirmed(&self, text: &[u8], emit: &mut Emit<'_>) {
        for found in self.token.find_iter(text) {
            self.accept(found.start(), found.as_bytes(), emit);
        }
    }

    /// Emits a pattern match at `start` if the library's parser accepts it (checksum,
    /// canonical encoding) and the prefix filter keeps it; returns whether it did.
    fn accept(&self, start: usize, candidate: &[u8], emit: &mut Emit<'_>) -> bool {
        // The pattern matches ASCII only.
        let Ok(candidate) = std::str::from_utf8(candidate) else {
            return false;
        };
        let Ok(parsed) = parse_token(candidate) else {
            return false;
        };
        let prefix = parsed.prefix();
        let skip = match &self.prefix {
            PrefixFilter::Any => 0,
            PrefixFilter::Only(wanted) => {
                let wanted = wanted.as_str();
                if prefix == wanted {
                    0
                } else if prefix.len() > wanted.len()
                    && prefix.ends_with(wanted)
                    && prefix.as_bytes()[prefix.len() - wanted.len() - 1] == b'_'
                {
                    prefix.len() - wanted.len()
                } else {
                    return false;
                }
            }
        };
        emit(
            start + skip,
            prefix[skip..].to_owned(),
            parsed.id(),
            Zeroizing::new(candidate[skip..].to_owned()),
        );
        true
    }
}

/// Adds the line holding `at` unless it is the last one added (positions come in increasing
/// order, so a long line with many candidates is measured once, not once per candidate).
fn push_line(lines: &mut Vec<(usize, usize)>, text: &[u8], at: usize) {
    if lines
        .last()
        .is_some_and(|&(start, end)| (start..=end).contains(&at))
    {
        return;
    }
    lines.push(line_of(text, at));
}

/// The line (start, end without the newline) holding `at`.
fn line_of(text: &[u8], at: usize) -> (usize, usize) {
    let start = memchr::memrchr(b'\n', &text[..at]).map_or(0, |nl| nl + 1);
    let end = memchr::memchr(b'\n', &text[at..]).map_or(text.len(), |nl| at + nl);
    (start, end)
}

/// Runs of at least [`decode::BASE64_MIN_RUN`] base64 characters.
fn base64_runs(text: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (at, &byte) in text.iter().enumerate() {
        match (BASE64_BYTE[usize::from(byte)], start) {
            (true, None) => start = Some(at),
            (false, Some(from)) => {
                if at - from >= decode::BASE64_MIN_RUN {
                    runs.push((from, at));
                }
                start = None;
            }
            _ => {}
        }
    }
    if let Some(from) = start
        && text.len() - from >= decode::BASE64_MIN_RUN
    {
        runs.push((from, text.len()));
    }
    runs
}

/// Splits `text` into pieces of about `size` bytes ending at line ends, one per core at most
/// as many as there are pieces.
fn split_at_lines(text: &[u8], size: usize) -> Vec<(usize, usize)> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if text.len() <= size || threads == 1 {
        return vec![(0, text.len())];
    }
    let size = size.max(text.len().div_ceil(threads));
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let target = (start + size).min(text.len());
        let end = memchr::memchr(b'\n', &text[target..]).map_or(text.len(), |nl| target + nl + 1);
        chunks.push((start, end));
        start = end;
    }
    chunks
}

/// Adds line and column to candidates sorted by offset.
fn locate(text: &[u8], found: Vec<Candidate>) -> Vec<Hit> {
    let mut hits = Vec::with_capacity(found.len());
    let mut line = 1;
    let mut line_start = 0;
    let mut counted_to = 0;
    for candidate in found {
        let offset = candidate.offset.min(text.len());
        for nl in memchr::memchr_iter(b'\n', &text[counted_to..offset]) {
            line += 1;
            line_start = counted_to + nl + 1;
        }
        counted_to = offset;
        let before = &text[line_start..offset];
        let column = match std::str::from_utf8(before) {
            Ok(prefix) => prefix.chars().count() + 1,
            Err(_) => before.len() + 1,
        };
        hits.push(Hit {
            line,
            column,
            offset,
            prefix: candidate.prefix,
            id: candidate.id,
            encoding: candidate.encoding,
            token: candidate.token,
        });
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use token_core::PlaintextToken;

    fn token(prefix: &str) -> PlaintextToken {
        PlaintextToken::generate(&TokenPrefix::new(prefix).unwrap()).unwrap()
    }

    fn only(prefix: &str) -> Scanner {
        Scanner::new(PrefixFilter::Only(TokenPrefix::new(prefix).unwrap()))
    }

    #[test]
    fn finds_tokens_in_every_encoding_at_their_position() {
        let t = token("acme_live");
        let s = t.expose_secret();
        let url: String = s.bytes().map(|b| format!("%{b:02X}")).collect();
        let json_escaped = s.replacen('_', "\\u005f", 2);
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("export KEY={s}"));
        let text = format!(
            "plain {s}\nq=a%3D{s}&x\nurl {url}\n{{\"k\":\"line\\n{s}\"}}\n\"{json_escaped}\"\nb64: {b64}\nné {s}\n"
        );
        let hits = only("acme_live").scan(text.as_bytes());
        let seen: Vec<_> = hits
            .iter()
            .map(|h| (h.line, h.column, h.encoding))
            .collect();
        assert_eq!(
            seen,
            [
                (1, 7, Encoding::Plain),
                (2, 7, Encoding::Url),
                (3, 5, Encoding::Url),
                (4, 13, Encoding::JsonEscape),
                (5, 2, Encoding::JsonEscape),
                (6, 6, Encoding::Base64),
                (7, 4, Encoding::Plain),
            ]
        );
        assert!(hits.iter().all(|h| h.id == t.id() && h.expose_token() == s));
    }

    #[test]
    fn near_misses_are_not_reported() {
        let t = token("acme_live");
        let s = t.expose_secret().to_owned();
        let mut bad_sum = s.clone().into_bytes();
        let last = bad_sum.len() - 1;
        bad_sum[last] = if bad_sum[last] == b'0' { b'1' } else { b'0' };
        let bad_sum = String::from_utf8(bad_sum).unwrap();
        let other = token("other_live");
        let text = format!(
            "{bad_sum}\n{}\n{}x\nx{}\n{}\n",
            &s[..s.len() - 1],
            s,
            s,
            other.expose_secret()
        );
        assert!(only("acme_live").scan(text.as_bytes()).is_empty());
        // Without a filter, well-formed tokens of any prefix are found (`x` glued in front
        // makes the prefix `xacme_live`).
        let any = Scanner::new(PrefixFilter::Any).scan(text.as_bytes());
        let prefixes: Vec<_> = any.iter().map(|h| h.prefix.as_str()).collect();
        assert_eq!(prefixes, ["xacme_live", "other_live"]);
    }

    #[test]
    fn a_word_glued_before_the_prefix_is_trimmed() {
        let t = token("acme_live");
        let text = format!("config_{}", t.expose_secret());
        let hits = only("acme_live").scan(text.as_bytes());
        assert_eq!(hits.len(), 1);
        assert_eq!((hits[0].column, hits[0].prefix.as_str()), (8, "acme_live"));
        assert_eq!(hits[0].expose_token(), t.expose_secret());
        assert!(only("live").scan(b"acmelive_x").is_empty());
    }

    #[test]
    fn debug_never_shows_the_token() {
        let t = token("acme");
        let hits = only("acme").scan(t.expose_secret().as_bytes());
        let debug = format!("{hits:?}");
        assert!(debug.contains(&t.id().to_string()));
        assert!(!debug.contains(t.expose_secret()));
    }
}

#[cfg(test)]
mod parallel_tests {
    use super::*;
    use token_core::PlaintextToken;

    /// Over the parallel threshold, with tokens on both sides of every chunk boundary: the
    /// same findings, at the same lines, as the text's lines give.
    #[test]
    fn large_inputs_split_across_threads_find_every_token_at_its_line() {
        let prefix = TokenPrefix::new("acme").unwrap();
        let filler = "some_text with_underscores and %41 escapes \\n here\n";
        let mut text = String::new();
        let mut expected = Vec::new();
        let mut line = 0;
        while text.len() < 3 * PARALLEL_CHUNK {
            text.push_str(filler);
            line += 1;
            if line % 5000 == 0 {
                let token = PlaintextToken::generate(&prefix).unwrap();
                text.push_str(&format!("k={}\n", token.expose_secret()));
                line += 1;
                expected.push((line, token.id()));
            }
        }
        assert!(
            split_at_lines(text.as_bytes(), PARALLEL_CHUNK).len() > 1
                || std::thread::available_parallelism().map_or(1, |n| n.get()) == 1
        );
        let hits = Scanner::new(PrefixFilter::Any).scan(text.as_bytes());
        let found: Vec<_> = hits.iter().map(|h| (h.line, h.id)).collect();
        assert_eq!(found, expected);
        assert!(hits.iter().all(|h| h.column == 3));
    }

    #[test]
    fn chunks_end_at_line_ends_and_cover_the_text() {
        let text = "a\n".repeat(1000);
        let chunks = split_at_lines(text.as_bytes(), 100);
        assert_eq!(chunks.first().map(|c| c.0), Some(0));
        assert_eq!(chunks.last().map(|c| c.1), Some(text.len()));
        for pair in chunks.windows(2) {
            assert_eq!(pair[0].1, pair[1].0);
            assert_eq!(text.as_bytes()[pair[0].1 - 1], b'\n');
        }
    }
}
