//! A DPoP client against the example server (started in this process on a loopback port): it
//! makes a key, gets a token bound to it from the admin API, calls `/widgets` with fresh
//! proofs, and shows a replayed proof and the token sent as Bearer refused.
//!
//! ```text
//! cargo run --example dpop_client
//! ```

use std::time::Duration;

use examples::server::{ServerOptions, bootstrap_admin, open_manager, serve_with};
use serde_json::{Value, json};
use token_dpop::client::ProofKey;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("dpop.db").display());
    let manager = open_manager(
        &url,
        token_core::HashKey::generate(token_core::KeyId::new(1))?,
    )
    .await?;
    let admin = bootstrap_admin(&manager).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        serve_with(
            listener,
            manager,
            &ServerOptions::default(),
            Duration::from_secs(60),
            shutdown,
        )
        .await
        .map_err(|e| e.to_string())
    });

    // The client's key (EdDSA) and the proofs it signs, from token-dpop's client side.
    let key = ProofKey::generate_ed25519()?;
    let jkt = key.thumbprint();
    println!("1. client key thumbprint (cnf.jkt): {}", jkt.as_str());
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{base}/tokens"))
        .bearer_auth(admin.token.expose_secret())
        .json(&json!({
            "subject": "svc:dpop-demo", "scopes": ["widgets:read"], "ttl_seconds": 600,
            "dpop_jkt": jkt.as_str()
        }))
        .send()
        .await?
        .json()
        .await?;
    let token = created["token"]
        .as_str()
        .ok_or("no token in the answer")?
        .to_owned();
    println!("2. issued a token bound to that key: id {}", created["id"]);

    let widgets = format!("{base}/widgets");
    let proof = key.proof(
        "GET",
        &widgets,
        Some(&token),
        None,
        time::OffsetDateTime::now_utc(),
    )?;
    let call = |proof: Option<String>, scheme: &str| {
        let mut request = http
            .get(&widgets)
            .header("authorization", format!("{scheme} {token}"));
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        request.send()
    };
    let ok = call(Some(proof.clone()), "DPoP").await?.status();
    println!("3. GET /widgets with a fresh proof -> {ok}");
    let again = call(
        Some(key.proof(
            "GET",
            &widgets,
            Some(&token),
            None,
            time::OffsetDateTime::now_utc(),
        )?),
        "DPoP",
    )
    .await?
    .status();
    println!("4. GET /widgets with another fresh proof -> {again}");
    let replay = call(Some(proof), "DPoP").await?;
    let challenges: Vec<&str> = replay
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    println!(
        "5. the first proof replayed -> {} ({})",
        replay.status(),
        challenges.join(" | ")
    );
    let bearer = call(None, "Bearer").await?.status();
    println!("6. the token sent as Bearer, without a proof -> {bearer}");

    let _ = stop.send(());
    server.await?.map_err(|e| e.to_string())?;
    Ok(())
}
