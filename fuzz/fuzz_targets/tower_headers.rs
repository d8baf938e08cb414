//! token-tower's credential parsing, through its public surface: a request with arbitrary
//! `Authorization`, `x-api-key` and `DPoP` header bytes goes through a `BearerAuthLayer`
//! (Bearer, API key and DPoP accepted, `widgets:read` required) over a memory-store manager.
//!
//! In header bytes, `{T0}`..`{T3}` stand for issued tokens (T0 `widgets:read`, T1 another scope,
//! T2 revoked, T3 `widgets:read` bound to a DPoP key) and `{P}` for a fresh valid DPoP proof by
//! T3's key for `GET https://api.example.com/widgets`, so the fuzzer reaches the accepting paths.
//!
//! Properties: never panics; the status is 200, 400, 401, 403 or 503; a 200 reaches the handler
//! only with a live `widgets:read` token that was issued (T0 or T3) and whose string is in a
//! credential header, and T3 only with a `DPoP` header.
#![no_main]

use std::convert::Infallible;
use std::sync::OnceLock;

use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;
use token_core::{
    HashKey, IssueRequest, KeyId, KeyThumbprint, Keyring, RevokeSelector, ScopeSet, TokenId,
    TokenManager,
};
use token_dpop::client::ProofKey;
use token_dpop::{DpopConfig, DpopVerifier};
use token_store_memory::MemoryStore;
use token_tower::{Authenticated, BearerAuth, BearerAuthLayer};
use tower::{Layer, ServiceExt, service_fn};

const BASE: &str = "https://api.example.com";

struct World {
    runtime: tokio::runtime::Runtime,
    layer: BearerAuthLayer,
    /// The token strings T0..T3 and their ids.
    tokens: Vec<(String, TokenId)>,
    key: ProofKey,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let key = ProofKey::ed25519_from_bytes([5; 32]);
        let (layer, tokens) = runtime.block_on(async {
            let manager = TokenManager::builder(
                MemoryStore::new(),
                Keyring::new(HashKey::new(KeyId::new(1), [3; 32])),
            )
            .prefix("acme")
            .expect("prefix")
            .build()
            .expect("manager");
            let jkt = KeyThumbprint::parse(key.thumbprint().as_str()).expect("thumbprint");
            let requests = [
                IssueRequest::new("user:0", ScopeSet::parse("widgets:read").unwrap()),
                IssueRequest::new("user:1", ScopeSet::parse("gadgets:read").unwrap()),
                IssueRequest::new("user:2", ScopeSet::parse("widgets:read").unwrap()),
                IssueRequest::new("user:3", ScopeSet::parse("widgets:read").unwrap())
                    .bind_to_key(jkt),
            ];
            let mut tokens = Vec::new();
            for request in requests {
                let issued = manager.issue(request).await.expect("issue");
                tokens.push((issued.token.expose_secret().to_owned(), issued.token.id()));
            }
            manager
                .revoke(RevokeSelector::Token(tokens[2].1), "fuzz")
                .await
                .expect("revoke");
            let layer = BearerAuth::new(manager)
                .api_key_header()
                .dpop(DpopVerifier::new(DpopConfig::new()), BASE)
                .expect("dpop")
                .require("widgets:read")
                .expect("requirement");
            (layer, tokens)
        });
        World {
            runtime,
            layer,
            tokens,
            key,
        }
    })
}

/// The input: a method byte, then `\n`-separated `Authorization`, `x-api-key`, `DPoP` and a
/// second `Authorization` value; a missing field or one that is exactly `~` is not sent.
struct Input<'a> {
    method: u8,
    headers: [Option<&'a [u8]>; 4],
}

fn parse(data: &[u8]) -> Input<'_> {
    let (method, rest) = data.split_first().map_or((0, &[][..]), |(m, r)| (*m, r));
    let mut fields = rest.splitn(4, |&b| b == b'\n');
    let mut field = || fields.next().filter(|f| *f != b"~");
    Input {
        method,
        headers: [field(), field(), field(), field()],
    }
}

fn substitute(world: &World, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let hit =
            (0..world.tokens.len()).find(|&n| rest.starts_with(format!("{{T{n}}}").as_bytes()));
        if let Some(n) = hit {
            out.extend_from_slice(world.tokens[n].0.as_bytes());
            i += 4;
        } else if rest.starts_with(b"{P}") {
            let proof = world
                .key
                .proof(
                    "GET",
                    &format!("{BASE}/widgets"),
                    Some(&world.tokens[3].0),
                    None,
                    OffsetDateTime::now_utc(),
                )
                .expect("proof");
            out.extend_from_slice(proof.as_bytes());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let input = parse(data);
    let world = world();
    let method = match input.method % 4 {
        0 => Method::GET,
        1 => Method::POST,
        2 => Method::HEAD,
        _ => Method::DELETE,
    };
    let mut builder = Request::builder().method(method).uri("/widgets");
    let mut credentials: Vec<Vec<u8>> = Vec::new();
    let mut has_dpop = false;
    let names = [
        http::header::AUTHORIZATION,
        HeaderName::from_static("x-api-key"),
        HeaderName::from_static("dpop"),
        http::header::AUTHORIZATION,
    ];
    for (name, value) in names.into_iter().zip(input.headers) {
        let Some(value) = value else { continue };
        let value = substitute(world, value);
        let Ok(header) = HeaderValue::from_bytes(&value) else {
            continue;
        };
        if name == "dpop" {
            has_dpop = true;
        } else {
            credentials.push(value);
        }
        builder = builder.header(name, header);
    }
    let Ok(request) = builder.body(()) else {
        return;
    };
    let handler = service_fn(|req: Request<()>| async move {
        let id = req.extensions().get::<Authenticated>().map(|a| a.0.id());
        Ok::<_, Infallible>(Response::new(id))
    });
    let response: Response<Option<TokenId>> = world
        .runtime
        .block_on(world.layer.layer(handler).oneshot(request))
        .expect("infallible");
    let status = response.status();
    assert!(
        [
            StatusCode::OK,
            StatusCode::BAD_REQUEST,
            StatusCode::UNAUTHORIZED,
            StatusCode::FORBIDDEN,
            StatusCode::SERVICE_UNAVAILABLE,
        ]
        .contains(&status),
        "unexpected status {status}"
    );
    // Anchors: the known answers for the known credentials, so the target is never vacuous.
    let expected = match input.headers {
        [Some(b"Bearer {T0}"), None, None, None] | [None, Some(b"{T0}"), None, None] => {
            Some(StatusCode::OK)
        }
        // `{P}` is a proof for GET.
        [Some(b"DPoP {T3}"), None, Some(b"{P}"), None] if input.method % 4 == 0 => {
            Some(StatusCode::OK)
        }
        [Some(b"Bearer {T1}"), None, None, None] => Some(StatusCode::FORBIDDEN),
        [Some(b"Bearer {T2}"), None, None, None] | [None, None, None, None] => {
            Some(StatusCode::UNAUTHORIZED)
        }
        _ => None,
    };
    if let Some(expected) = expected {
        assert_eq!(status, expected, "known credential answered {status}");
    }
    if status == StatusCode::OK {
        let id = response
            .body()
            .expect("a 200 from the handler carries an authenticated token");
        let n = world
            .tokens
            .iter()
            .position(|(_, t)| *t == id)
            .expect("a 200 for a token that was never issued");
        assert!(
            n == 0 || n == 3,
            "a 200 for token T{n} (wrong scope or revoked)"
        );
        let secret = world.tokens[n].0.as_bytes();
        assert!(
            credentials
                .iter()
                .any(|c| c.windows(secret.len()).any(|w| w == secret)),
            "a 200 for T{n} whose string was not presented"
        );
        if n == 3 {
            assert!(has_dpop, "a bound token accepted without a DPoP proof");
        }
    }
});
