//! DPoP through the layer over real HTTP: a bound token with fresh proofs passes; a replayed
//! proof, a bound token sent as Bearer, an unbound token sent with a proof are refused with the
//! RFC 9449 challenges; the server-nonce dance.

use axum::Router;
use axum::routing::get;
use token_core::{HashKey, IssueRequest, KeyId, KeyThumbprint, Keyring, ScopeSet, TokenManager};
use token_dpop::client::ProofKey;
use token_dpop::{DpopConfig, DpopVerifier, NonceKey};
use token_store_memory::MemoryStore;
use token_tower::{Authenticated, BearerAuth};

/// A client key and the proofs it signs (EdDSA), through token-dpop's client side.
struct Client(ProofKey);

impl Client {
    fn new(seed: u8) -> Self {
        Self(ProofKey::ed25519_from_bytes([seed; 32]))
    }

    fn thumbprint(&self) -> KeyThumbprint {
        self.0
            .thumbprint()
            .as_str()
            .parse()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A fresh proof of `GET url` for `token`, with `nonce` when given.
    fn proof(&self, url: &str, token: &str, nonce: Option<&str>) -> String {
        self.0
            .proof(
                "GET",
                url,
                Some(token),
                nonce,
                time::OffsetDateTime::now_utc(),
            )
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

fn manager() -> TokenManager {
    TokenManager::builder(
        MemoryStore::new(),
        Keyring::new(HashKey::new(KeyId::new(1), [6; 32])),
    )
    .prefix("acme")
    .unwrap_or_else(|e| panic!("{e}"))
    .build()
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Serves `/widgets` with DPoP accepted under the server's own base URL; returns that URL.
async fn serve(manager: TokenManager, config: DpopConfig) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let base = format!(
        "http://{}",
        listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    let auth = BearerAuth::new(manager)
        .realm("acme")
        .dpop(DpopVerifier::new(config), &base)
        .unwrap_or_else(|e| panic!("{e}"));
    let app = Router::new()
        .route(
            "/widgets",
            get(|who: Authenticated| async move { who.subject().to_owned() }),
        )
        .route_layer(
            auth.require("widgets:read")
                .unwrap_or_else(|e| panic!("{e}")),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

async fn issue(manager: &TokenManager, bound: Option<KeyThumbprint>) -> String {
    let mut request = IssueRequest::new(
        "user:1",
        ScopeSet::parse("widgets:read").unwrap_or_else(|e| panic!("{e}")),
    );
    if let Some(jkt) = bound {
        request = request.bind_to_key(jkt);
    }
    let issued = manager
        .issue(request)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    issued.token.expose_secret().to_owned()
}

fn challenges(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_token_with_fresh_proofs_passes_and_every_downgrade_or_replay_is_refused() {
    let manager = manager();
    let client = Client::new(1);
    let bound = issue(&manager, Some(client.thumbprint())).await;
    let unbound = issue(&manager, None).await;
    let base = serve(manager, DpopConfig::new()).await;
    let url = format!("{base}/widgets");
    let http = reqwest::Client::new();
    let send = |token: String, scheme: &'static str, proof: Option<String>| {
        let mut request = http
            .get(&url)
            .header("authorization", format!("{scheme} {token}"));
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        request.send()
    };

    let proof = client.proof(&url, &bound, None);
    let ok = send(bound.clone(), "DPoP", Some(proof.clone()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap_or_default(), "user:1");

    let replay = send(bound.clone(), "DPoP", Some(proof))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(replay.status(), 401);
    let replay_challenges = challenges(&replay);
    assert!(
        replay_challenges
            .iter()
            .any(|c| c.starts_with("DPoP ") && c.contains("error=\"invalid_dpop_proof\"")),
        "{replay_challenges:?}"
    );
    assert!(
        replay_challenges
            .iter()
            .any(|c| c.starts_with("Bearer realm=\"acme\"")),
        "both schemes are offered: {replay_challenges:?}"
    );

    let as_bearer = send(bound.clone(), "Bearer", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(as_bearer.status(), 401, "a bound token is no bearer token");
    assert!(
        challenges(&as_bearer)
            .iter()
            .any(|c| c.starts_with("Bearer") && c.contains("invalid_token"))
    );

    let no_proof = send(bound.clone(), "DPoP", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(no_proof.status(), 401);
    assert!(
        challenges(&no_proof)
            .iter()
            .any(|c| c.contains("invalid_dpop_proof"))
    );

    let other_path = client.proof(&format!("{base}/other"), &bound, None);
    let wrong_htu = send(bound.clone(), "DPoP", Some(other_path))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wrong_htu.status(), 401);

    let proof_for_unbound = client.proof(&url, &unbound, None);
    let unbound_with_proof = send(unbound.clone(), "DPoP", Some(proof_for_unbound))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        unbound_with_proof.status(),
        401,
        "an unbound token sent with DPoP"
    );
    let plain = send(unbound, "Bearer", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plain.status(), 200, "an unbound token stays a bearer token");

    let stranger = Client::new(2);
    let wrong_key = send(
        bound.clone(),
        "DPoP",
        Some(stranger.proof(&url, &bound, None)),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wrong_key.status(), 401, "a proof by another key");

    let anonymous = http
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let bare = challenges(&anonymous);
    assert_eq!(bare.len(), 2, "a Bearer and a DPoP challenge: {bare:?}");
    assert!(
        bare.iter()
            .any(|c| c.starts_with("DPoP ") && c.contains("algs=\""))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_nonces_are_required_then_accepted() {
    let manager = manager();
    let client = Client::new(3);
    let bound = issue(&manager, Some(client.thumbprint())).await;
    let key = NonceKey::new([9; 32]);
    let base = serve(manager, DpopConfig::new().nonces(key)).await;
    let url = format!("{base}/widgets");
    let http = reqwest::Client::new();
    let first = http
        .get(&url)
        .header("authorization", format!("DPoP {bound}"))
        .header("dpop", client.proof(&url, &bound, None))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.status(), 401);
    assert!(
        challenges(&first)
            .iter()
            .any(|c| c.contains("error=\"use_dpop_nonce\""))
    );
    let nonce = first
        .headers()
        .get("dpop-nonce")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no DPoP-Nonce with use_dpop_nonce"));
    let second = http
        .get(&url)
        .header("authorization", format!("DPoP {bound}"))
        .header("dpop", client.proof(&url, &bound, Some(&nonce)))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(second.status(), 200);
}
