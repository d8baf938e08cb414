//! OAuth form body parsing of the example server (`examples::server::router`), through the
//! router: `POST /oauth/introspect` with an arbitrary body and content type. Built only with
//! `--features oauth` (the `examples` crate brings the SQL drivers).
//!
//! In the body, `{A}` stands for the caller's admin token and `{T}` for another issued token
//! (`widgets:read`), so the active path is reached.
//!
//! Properties: never panics; the status is 200, 400, 401 or 413; a 200 answers a JSON object
//! whose `active` is a boolean, and `active: true` only for a token that was issued, named by
//! its subject.
#![no_main]

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use token_core::{HashKey, IssueRequest, KeyId, Keyring, ScopeSet, TokenManager};
use token_store_memory::MemoryStore;
use tower::ServiceExt;

struct World {
    runtime: tokio::runtime::Runtime,
    router: Router,
    admin: String,
    token: String,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (router, admin, token) = runtime.block_on(async {
            let manager = TokenManager::builder(
                MemoryStore::new(),
                Keyring::new(HashKey::new(KeyId::new(1), [3; 32])),
            )
            .prefix("example")
            .expect("prefix")
            .build()
            .expect("manager");
            let admin = examples::server::bootstrap_admin(&manager)
                .await
                .expect("admin token");
            let token = manager
                .issue(IssueRequest::new(
                    "user:widgets",
                    ScopeSet::parse("widgets:read").unwrap(),
                ))
                .await
                .expect("issue");
            let router = examples::server::router(
                manager,
                "https://api.example.com",
                &examples::server::ServerOptions::default(),
            )
            .expect("router");
            (
                router,
                admin.token.expose_secret().to_owned(),
                token.token.expose_secret().to_owned(),
            )
        });
        World {
            runtime,
            router,
            admin,
            token,
        }
    })
}

/// The input: the content type (`~` for `application/x-www-form-urlencoded`, empty for none),
/// `\n`, the body.
struct Input<'a> {
    content_type: &'a [u8],
    body: &'a [u8],
}

fn parse(data: &[u8]) -> Input<'_> {
    let mut parts = data.splitn(2, |&b| b == b'\n');
    Input {
        content_type: parts.next().unwrap_or_default(),
        body: parts.next().unwrap_or_default(),
    }
}

fn substitute(world: &World, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"{A}") {
            out.extend_from_slice(world.admin.as_bytes());
            i += 3;
        } else if bytes[i..].starts_with(b"{T}") {
            out.extend_from_slice(world.token.as_bytes());
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
    let body = substitute(world, input.body);
    let mut builder = Request::builder()
        .method("POST")
        .uri("/oauth/introspect")
        .header("authorization", format!("Bearer {}", world.admin));
    match input.content_type {
        b"~" => builder = builder.header("content-type", "application/x-www-form-urlencoded"),
        b"" => {}
        ct => {
            if let Ok(value) = http::HeaderValue::from_bytes(ct) {
                builder = builder.header("content-type", value);
            }
        }
    }
    let sent = body.clone();
    let Ok(request) = builder.body(Body::from(body)) else {
        return;
    };
    let (status, bytes) = world.runtime.block_on(async {
        let response = world
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("response body");
        (status, bytes)
    });
    assert!(
        [
            StatusCode::OK,
            StatusCode::BAD_REQUEST,
            StatusCode::UNAUTHORIZED,
            StatusCode::PAYLOAD_TOO_LARGE,
        ]
        .contains(&status),
        "unexpected status {status}"
    );
    // Anchor: the known answer for the other issued token, so the target is never vacuous.
    if data == b"~\ntoken={T}" {
        assert_eq!(status, StatusCode::OK);
        let json: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(json["active"], true, "{json}");
    }
    if status == StatusCode::OK {
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).expect("a 200 introspection answers JSON");
        let active = json
            .get("active")
            .and_then(serde_json::Value::as_bool)
            .expect("`active` is a boolean");
        if active {
            // The one `token` parameter of the form names an issued token, and the answer its
            // subject.
            let presented: Vec<String> = form_urlencoded::parse(&sent)
                .filter(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
                .collect();
            let sub = json.get("sub").and_then(serde_json::Value::as_str);
            let expected = if presented == [world.admin.clone()] {
                "bootstrap-admin"
            } else if presented == [world.token.clone()] {
                "user:widgets"
            } else {
                panic!("active for a token that was not issued: {json}");
            };
            assert_eq!(sub, Some(expected), "{json}");
        } else {
            assert_eq!(json, serde_json::json!({"active": false}));
        }
    }
});
