//! The README's protected axum route: an API key header, JSON errors, spans in the log, `/metrics`.
use axum::{Router, routing::get};
use token_core::{HashKey, IssueRequest, KeyId, Keyring, ScopeSet, TokenManager};
use token_tower::{Authenticated, BearerAuth, OAuthErrorJson};
use tracing_subscriber::{EnvFilter, fmt, fmt::format::FmtSpan};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()); // RUST_LOG
    let logs = fmt().with_writer(std::io::stderr).with_env_filter(filter);
    logs.with_span_events(FmtSpan::CLOSE).init(); // RUST_LOG=info,token_core=debug: validations
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let store = token_store_sqlite::SqliteStore::connect("sqlite://tokens.db").await?;
    store.migrate().await?;
    let key = HashKey::from_hex(KeyId::new(1), &std::env::var("TOKEN_HASH_KEY")?)?;
    let tokens = TokenManager::builder(store, Keyring::new(key)).build()?;
    let scopes = ScopeSet::parse("widgets:read metrics:read")?;
    let demo = tokens.issue(IssueRequest::new("user:42", scopes)).await?;
    let secret = demo.token.expose_secret(); // shown once, never logged
    println!("curl -H 'x-api-key: {secret}' http://127.0.0.1:3000/widgets");
    let auth = BearerAuth::new(tokens).api_key_header();
    let auth = auth.render_rejections(OAuthErrorJson); // RFC 6749 JSON error bodies
    let hello = get(|who: Authenticated| async move { format!("hi {}\n", who.subject()) });
    let page = get(move || async move { metrics.render() });
    let app = Router::new()
        .route("/widgets", hello.route_layer(auth.require("widgets:read")?))
        .route("/metrics", page.route_layer(auth.require("metrics:read")?));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    Ok(axum::serve(listener, app).await?)
}
