//! The secret-leak sweep: a whole lifecycle (issue, validate, any-of, derive, rotate, suspend,
//! resume, update, a key-bound token with a proof, introspect, failed validations of every kind,
//! revoke by selector and by possession, sweep) with TRACE captured, the audit trail exported as
//! JSON Lines, the `Debug` and `Display` of every value a caller gets, and every error message,
//! then a search of all of it for each token's secret in every form (the token string, the
//! secret's base62 digits, its bytes as hex, base64, base64url and a byte array): none found.

#[path = "support/secrets.rs"]
mod secrets;

use std::fmt::Write as _;
use std::time::Duration;

use secrets::{Capture, forms};
use token_core::{
    AnyOf, AuditQuery, Context, DeriveRequest, HashKey, IssueRequest, KeyId, KeyThumbprint,
    Keyring, ManualClock, Metadata, PlaintextToken, ProofOfPossession, RevokeSelector, ScopeSet,
    TokenManager, TokenPrefix, TokenUpdate, parse_token,
};
use token_store_memory::MemoryStore;

#[test]
fn no_output_of_a_lifecycle_carries_a_secret() {
    let capture = Capture::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let scopes = |text: &str| ScopeSet::parse(text).unwrap();
    let mut tokens: Vec<String> = Vec::new();
    // Everything a caller could print or store, collected as text.
    let mut out = String::new();
    tracing::subscriber::with_default(capture.clone(), || {
        runtime.block_on(async {
            let clock = ManualClock::starting_now();
            let manager = TokenManager::builder(
                MemoryStore::new(),
                Keyring::new(HashKey::new(KeyId::new(1), [5; 32])),
            )
            .prefix("acme")
            .unwrap()
            .clock(clock.clone())
            .build()
            .unwrap();
            let _ = writeln!(out, "{manager:?}");
            let meta = Metadata::from_value(serde_json::json!({"team": "payments"})).unwrap();
            let root = manager
                .issue(
                    IssueRequest::new("user:42", scopes("a b"))
                        .ttl(Duration::from_secs(3600))
                        .metadata(meta)
                        .allowed_networks("10.0.0.0/8".parse().unwrap()),
                )
                .await
                .unwrap();
            let _ = writeln!(out, "{root:?} {:?}", root.token);
            let _ = writeln!(
                out,
                "{:?}",
                root.record.view_at(token_core::Clock::now(&clock))
            );
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string(&root.record.view_at(token_core::Clock::now(&clock)))
                    .unwrap()
            );
            tokens.push(root.token.expose_secret().to_owned());
            let secret = root.token.expose_secret().to_owned();
            let parsed = parse_token(&secret).unwrap();
            let _ = writeln!(out, "{parsed:?}");
            let inside = Context::new().client_ip("10.1.2.3");
            let valid = manager
                .validate_with(&secret, &["a".parse().unwrap()], &inside)
                .await
                .unwrap();
            let _ = writeln!(out, "{valid:?}");
            let any = AnyOf::parse("a z").unwrap();
            let _ = writeln!(
                out,
                "{:?}",
                manager.validate_any_with(&secret, &any, &inside).await
            );
            let _ = writeln!(out, "{:?}", manager.introspect(&secret).await);

            // Failures of every kind, Debug and Display.
            let mut wrong_sum = secret.clone();
            let at = wrong_sum.len() - 30;
            let other = if &wrong_sum[at..=at] == "0" { "1" } else { "0" };
            wrong_sum.replace_range(at..=at, other);
            let prefix = TokenPrefix::new("acme").unwrap();
            let wrong_secret = PlaintextToken::from_parts(&prefix, root.token.id(), [9; 32]);
            let foreign = PlaintextToken::generate(&TokenPrefix::new("other").unwrap()).unwrap();
            for attempt in [
                wrong_sum.as_str(),
                wrong_secret.expose_secret(),
                foreign.expose_secret(),
                &secret[..secret.len() - 1],
                "acme_garbage",
            ] {
                let error = manager.validate_with(attempt, &[], &inside).await.err();
                let _ = writeln!(
                    out,
                    "{error:?} {}",
                    error.as_ref().map(ToString::to_string).unwrap_or_default()
                );
            }
            let outside = manager.validate(&secret, &[]).await.err();
            note_error(&mut out, outside.as_ref());
            let scope = manager
                .validate_with(&secret, &["c".parse().unwrap()], &inside)
                .await
                .err();
            let _ = writeln!(out, "{scope:?}");

            let child = manager
                .derive(root.token.id(), DeriveRequest::new(scopes("a")))
                .await
                .unwrap();
            let _ = writeln!(out, "{child:?}");
            tokens.push(child.token.expose_secret().to_owned());
            let widened = manager
                .derive(root.token.id(), DeriveRequest::new(scopes("a z")))
                .await
                .err();
            note_error(&mut out, widened.as_ref());
            let _ = writeln!(
                out,
                "{:?}",
                manager
                    .suspend(RevokeSelector::Token(child.token.id()), "investigating")
                    .await
            );
            let _ = writeln!(
                out,
                "{:?}",
                manager
                    .validate_with(child.token.expose_secret(), &[], &inside)
                    .await
            );
            let _ = writeln!(
                out,
                "{:?}",
                manager
                    .resume(RevokeSelector::Token(child.token.id()), "cleared")
                    .await
            );
            let updated = manager
                .update(
                    root.token.id(),
                    TokenUpdate::new().scopes(scopes("a")).name("renamed"),
                )
                .await
                .unwrap();
            let _ = writeln!(out, "{updated:?}");
            let refused = manager
                .update(root.token.id(), TokenUpdate::new().scopes(scopes("a b z")))
                .await
                .err();
            note_error(&mut out, refused.as_ref());

            // Credits that refill and rate limits: issued, used past the limit, refilled,
            // narrowed (and refused widening), admitted and refused by an admission step.
            let credits = manager
                .issue(
                    IssueRequest::new("svc:credits", scopes("a"))
                        .max_uses(1)
                        .refill_uses("every 60s".parse().unwrap())
                        .rate_limits(
                            token_core::RateLimits::new(["requests=5/60s".parse().unwrap()])
                                .unwrap(),
                        ),
                )
                .await
                .unwrap();
            tokens.push(credits.token.expose_secret().to_owned());
            let credit_token = credits.token.expose_secret().to_owned();
            for _ in 0..2 {
                let _ = writeln!(out, "{:?}", manager.validate(&credit_token, &[]).await);
            }
            clock.advance(Duration::from_secs(60));
            let admitted = manager
                .validate_admitted(
                    &credit_token,
                    token_core::Required::All(&[]),
                    &Context::new(),
                    None,
                    async |v| Err::<(), _>(format!("refused {}", v.id())),
                )
                .await;
            let _ = writeln!(out, "{admitted:?}");
            let _ = writeln!(out, "{:?}", manager.validate(&credit_token, &[]).await);
            let narrowed = manager
                .update(
                    credits.token.id(),
                    TokenUpdate::new().refill_uses("daily".parse().unwrap()),
                )
                .await;
            let _ = writeln!(out, "{narrowed:?}");
            let widened = manager
                .update(
                    credits.token.id(),
                    TokenUpdate::new().rate_limits(token_core::RateLimits::none()),
                )
                .await
                .err();
            note_error(&mut out, widened.as_ref());
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string(
                    &manager
                        .inspect(credits.token.id())
                        .await
                        .unwrap()
                        .unwrap()
                        .view_at(token_core::Clock::now(&clock))
                )
                .unwrap()
            );

            let jkt: KeyThumbprint = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
                .parse()
                .unwrap();
            let bound = manager
                .issue(IssueRequest::new("svc:bound", scopes("a")).bind_to_key(jkt.clone()))
                .await
                .unwrap();
            tokens.push(bound.token.expose_secret().to_owned());
            let proof = ProofOfPossession::new(
                jkt,
                "jti-1",
                token_core::Clock::now(&clock) + time::Duration::minutes(1),
            );
            let _ = writeln!(out, "{proof:?}");
            let ctx = Context::new();
            let _ = writeln!(
                out,
                "{:?}",
                manager
                    .validate_with_proof(bound.token.expose_secret(), &[], &ctx, &proof)
                    .await
            );
            let _ = writeln!(
                out,
                "{:?}",
                manager
                    .validate_with_proof(bound.token.expose_secret(), &[], &ctx, &proof)
                    .await
            );
            let _ = writeln!(
                out,
                "{:?}",
                manager.validate(bound.token.expose_secret(), &[]).await
            );

            let successor = manager
                .rotate(root.token.id(), Duration::ZERO)
                .await
                .unwrap();
            let _ = writeln!(out, "{successor:?}");
            tokens.push(successor.token.expose_secret().to_owned());
            let _ = writeln!(
                out,
                "{:?}",
                manager
                    .revoke_presented(bound.token.expose_secret(), "leaked", &ctx)
                    .await
            );
            let _ = writeln!(
                out,
                "{:?}",
                manager
                    .revoke(RevokeSelector::Subject("user:42".into()), "done")
                    .await
            );
            let _ = writeln!(
                out,
                "{:?}",
                manager.validate(successor.token.expose_secret(), &[]).await
            );
            clock.advance(Duration::from_secs(7200));
            let _ = writeln!(out, "{:?}", manager.sweep().await);
            manager.flush_denials().await;
            manager.flush_usage().await.unwrap();

            let mut jsonl = Vec::new();
            manager
                .export_audit_jsonl(AuditQuery::new(), &mut jsonl)
                .await
                .unwrap();
            out.push_str(&String::from_utf8(jsonl).unwrap());
            let _ = writeln!(out, "{:?}", manager.query_audit(AuditQuery::new()).await);
            let _ = writeln!(out, "{:?}", manager.verify_audit_chain(None, None).await);
            let _ = writeln!(out, "{:?}", manager.stats());
        });
    });
    let traced = capture.text.lock().unwrap().clone();
    assert!(
        traced.contains("span token.manage"),
        "the capture saw the lifecycle:\n{traced}"
    );
    assert!(
        out.contains("\"kind\":\"suspended\""),
        "the export holds the trail:\n{out}"
    );
    assert_eq!(tokens.len(), 5);
    for token in &tokens {
        for form in forms(token) {
            assert!(
                !traced.contains(&form),
                "a secret form leaked into TRACE output: {form}"
            );
            assert!(
                !out.contains(&form),
                "a secret form leaked into printed output: {form}"
            );
        }
    }
}

/// Writes a refused call's error as its `Debug` and `Display` forms (both must stay secret-free).
fn note_error<E: std::fmt::Debug + std::fmt::Display>(out: &mut String, error: Option<&E>) {
    let _ = writeln!(
        out,
        "{error:?} {}",
        error.map(ToString::to_string).unwrap_or_default()
    );
}
