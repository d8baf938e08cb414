//! The pure validation decision on a looked-up record ([`decide`]): possession, state, the
//! key binding, the network allowlist, then the scopes. No I/O: `validate.rs` reads the record
//! and accounts the use; this file decides, and is unit-tested for every refusal.

use time::OffsetDateTime;

use crate::binding::ProofOfPossession;
use crate::error::ValidationError;
use crate::format::ParsedToken;
use crate::keyring::{Keyring, KeyringError};
use crate::record::{TokenRecord, TokenState};
use crate::scope::Scope;

/// The scopes a validation checks: every one, or at least one.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Required<'a> {
    /// Every scope ([`validate`](crate::TokenManager::validate)); none means any valid token.
    All(&'a [Scope]),
    /// At least one ([`validate_any`](crate::TokenManager::validate_any)); never empty ([`AnyOf`](crate::AnyOf)).
    Any(&'a [Scope]),
}

impl<'a> Required<'a> {
    pub(crate) fn scopes(self) -> &'a [Scope] {
        match self {
            Self::All(scopes) | Self::Any(scopes) => scopes,
        }
    }

    /// `None` when `granted` meets the requirement, else the scopes to name as missing: those
    /// of an all-of requirement it lacks, every alternative of an any-of one.
    fn missing(self, granted: &crate::scope::ScopeSet) -> Option<Vec<Scope>> {
        match self {
            Self::All(scopes) if scopes.iter().all(|r| granted.permits(r)) => None,
            Self::All(scopes) => Some(
                scopes
                    .iter()
                    .filter(|r| !granted.permits(r))
                    .cloned()
                    .collect(),
            ),
            Self::Any(scopes) if scopes.iter().any(|r| granted.permits(r)) => None,
            Self::Any(scopes) => Some(scopes.to_vec()),
        }
    }
}

/// What the request presented besides the token: the caller's address and a verified proof of
/// possession.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Presented<'a> {
    /// The caller's address (`Context::client_ip`), for a token with a network allowlist.
    pub(crate) caller: Option<&'a str>,
    /// A verified DPoP proof, for a bound token.
    pub(crate) proof: Option<&'a ProofOfPossession>,
}

/// What [`decide`] leaves for the step that accounts the use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accounting {
    /// The token has `max_uses`: the store counts the use atomically (and may still refuse).
    ConsumeUse,
    /// Any other token: the use is coalesced in memory.
    Coalesce,
}

/// The pure validation decision on a looked-up record: possession (constant-time hash compare
/// under the record's key, and the prefix it was issued under), state at `now` (revoked,
/// expired, suspended, not yet valid, idle — counting this process's `buffered_use`, asked for
/// only when the record alone looks idle — used up), the caller's address against the token's
/// network allowlist (when it has one), then the required scopes. No I/O: everything it needs
/// is in its arguments.
pub(crate) fn decide(
    keyring: &Keyring,
    parsed: &ParsedToken<'_>,
    record: &TokenRecord,
    required: Required<'_>,
    now: OffsetDateTime,
    presented: Presented<'_>,
    buffered_use: impl FnOnce() -> Option<OffsetDateTime>,
) -> Result<Accounting, ValidationError> {
    verify_possession(keyring, parsed, record)?;
    let mut state = record.state_at(now);
    if state == TokenState::IdleExpired {
        state = record.state_with_last_use(now, buffered_use());
    }
    if let Some(error) = ValidationError::from_state(state) {
        return Err(error);
    }
    // A bound token needs a proof by its key; a proof needs a bound token (no downgrade).
    match (&record.dpop_jkt, presented.proof) {
        (Some(_), None) => return Err(ValidationError::ProofRequired),
        (Some(bound), Some(proof)) if bound != proof.jkt() => {
            return Err(ValidationError::ProofKeyMismatch);
        }
        (None, Some(_)) => return Err(ValidationError::NotBound),
        _ => {}
    }
    if let Some(networks) = &record.allowed_networks {
        // No address, or one that does not parse, is outside every network.
        let address = presented
            .caller
            .and_then(|ip| ip.trim().parse::<std::net::IpAddr>().ok());
        if !address.is_some_and(|a| networks.permits(a)) {
            return Err(ValidationError::AddressNotAllowed);
        }
    }
    if let Some(missing) = required.missing(&record.scopes) {
        return Err(ValidationError::InsufficientScope { missing });
    }
    Ok(if record.max_uses.is_some() {
        Accounting::ConsumeUse
    } else {
        Accounting::Coalesce
    })
}

/// Proof of possession: the presented secret matches the stored hash (constant-time, under the
/// key the record names), and the token was issued under the prefix it is presented with. The
/// prefix is not covered by the hash: without that check a token issued under one prefix
/// (`acme_test`) would pass under another (`acme_live`) sharing store and key — in validation,
/// introspection and revocation.
pub(super) fn verify_possession(
    keyring: &Keyring,
    parsed: &ParsedToken<'_>,
    record: &TokenRecord,
) -> Result<(), ValidationError> {
    match keyring.verify(
        record.hash_key_id,
        &record.id,
        parsed.secret_bytes(),
        &record.hash,
    ) {
        Ok(true) => {}
        Ok(false) => return Err(ValidationError::WrongSecret),
        Err(KeyringError::UnknownKey(key)) => return Err(ValidationError::UnknownHashKey(key)),
        Err(_) => return Err(ValidationError::WrongSecret),
    }
    if record.prefix != parsed.prefix() {
        return Err(ValidationError::ForeignPrefix);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use time::OffsetDateTime;

    use super::{Accounting, Presented, Required, decide};
    use crate::error::ValidationError;
    use crate::format::{PlaintextToken, TokenPrefix, parse_token};
    use crate::keyring::{HashKey, KeyId, Keyring};
    use crate::record::{Revocation, TokenRecord};
    use crate::scope::Scope;

    const NOW: OffsetDateTime = time::macros::datetime!(2026-12-01 12:00 UTC);

    struct Fixture {
        keyring: Keyring,
        token: PlaintextToken,
        record: TokenRecord,
    }

    /// A live `acme` token with scope `widgets:read`, issued an hour before [`NOW`].
    fn fixture() -> Fixture {
        let keyring = Keyring::new(HashKey::new(KeyId::new(1), [7; 32]));
        let prefix = TokenPrefix::new("acme").unwrap();
        let token = PlaintextToken::generate(&prefix).unwrap();
        let (hash_key_id, hash) = keyring.hash_current(&token.id(), token.secret_bytes());
        let record = TokenRecord {
            expires_at: Some(NOW + time::Duration::hours(1)),
            ..TokenRecord::for_tests(
                token.id(),
                hash,
                hash_key_id,
                NOW - time::Duration::hours(1),
            )
        };
        Fixture {
            keyring,
            token,
            record,
        }
    }

    fn read() -> Vec<Scope> {
        vec!["widgets:read".parse().unwrap()]
    }

    fn run(
        f: &Fixture,
        required: &[Scope],
        buffered: Option<OffsetDateTime>,
    ) -> Result<Accounting, ValidationError> {
        let parsed = parse_token(f.token.expose_secret()).unwrap();
        decide(
            &f.keyring,
            &parsed,
            &f.record,
            Required::All(required),
            NOW,
            Presented::default(),
            || buffered,
        )
    }

    #[test]
    fn a_token_with_an_allowlist_needs_an_address_inside_it() {
        let mut f = fixture();
        f.record.allowed_networks = "10.0.0.0/8 2001:db8::/32".parse().ok();
        let parsed = parse_token(f.token.expose_secret()).unwrap();
        let at = |caller: Option<&str>| {
            decide(
                &f.keyring,
                &parsed,
                &f.record,
                Required::All(&read()),
                NOW,
                Presented {
                    caller,
                    proof: None,
                },
                || None,
            )
        };
        assert!(at(Some("10.1.2.3")).is_ok());
        assert!(at(Some("2001:db8::9")).is_ok());
        for outside in [
            None,
            Some("11.0.0.1"),
            Some("2001:db9::1"),
            Some("not an ip"),
        ] {
            assert!(
                matches!(at(outside), Err(ValidationError::AddressNotAllowed)),
                "{outside:?}"
            );
        }
        f.record.suspended_at = Some(NOW);
        assert!(matches!(
            decide(
                &f.keyring,
                &parsed,
                &f.record,
                Required::All(&read()),
                NOW,
                Presented {
                    caller: Some("10.1.2.3"),
                    proof: None,
                },
                || None
            ),
            Err(ValidationError::Suspended)
        ));
    }

    #[test]
    fn a_bound_token_needs_a_proof_by_its_key_and_a_proof_needs_a_bound_token() {
        use crate::binding::{KeyThumbprint, ProofOfPossession};
        let key = |text: &str| KeyThumbprint::parse(text).unwrap();
        let mine = key("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        let other = key("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
        let mut f = fixture();
        let parsed = parse_token(f.token.expose_secret()).unwrap();
        let with = |f: &Fixture, proof: Option<&ProofOfPossession>| {
            decide(
                &f.keyring,
                &parsed,
                &f.record,
                Required::All(&read()),
                NOW,
                Presented {
                    caller: None,
                    proof,
                },
                || None,
            )
        };
        let by_mine = ProofOfPossession::new(mine.clone(), "j1", NOW);
        let by_other = ProofOfPossession::new(other, "j2", NOW);
        assert!(matches!(
            with(&f, Some(&by_mine)),
            Err(ValidationError::NotBound)
        ));
        assert!(with(&f, None).is_ok());
        f.record.dpop_jkt = Some(mine);
        assert!(matches!(
            with(&f, None),
            Err(ValidationError::ProofRequired)
        ));
        assert!(matches!(
            with(&f, Some(&by_other)),
            Err(ValidationError::ProofKeyMismatch)
        ));
        assert!(with(&f, Some(&by_mine)).is_ok());
    }

    fn run_any(f: &Fixture, alternatives: &[Scope]) -> Result<Accounting, ValidationError> {
        let parsed = parse_token(f.token.expose_secret()).unwrap();
        decide(
            &f.keyring,
            &parsed,
            &f.record,
            Required::Any(alternatives),
            NOW,
            Presented::default(),
            || None,
        )
    }

    #[test]
    fn any_of_passes_with_one_alternative_and_names_all_when_none_is_held() {
        let f = fixture();
        let admin: Scope = "widgets:admin".parse().unwrap();
        let alternatives = vec![admin.clone(), read()[0].clone()];
        assert_eq!(run_any(&f, &alternatives).unwrap(), Accounting::Coalesce);
        let write: Scope = "widgets:write".parse().unwrap();
        let none_held = vec![admin, write];
        match run_any(&f, &none_held) {
            Err(ValidationError::InsufficientScope { missing }) => assert_eq!(missing, none_held),
            other => panic!("expected InsufficientScope, got {other:?}"),
        }
        let mut revoked = fixture();
        revoked.record.revocation = Some(Revocation {
            at: NOW,
            reason: "test".to_owned(),
            actor: None,
        });
        assert!(matches!(
            run_any(&revoked, &alternatives),
            Err(ValidationError::Revoked)
        ));
    }

    #[test]
    fn a_live_token_with_its_scope_is_coalesced() {
        assert_eq!(
            run(&fixture(), &read(), None).unwrap(),
            Accounting::Coalesce
        );
    }

    #[test]
    fn a_use_limited_token_goes_to_the_store_for_its_count() {
        let mut f = fixture();
        f.record.max_uses = Some(3);
        f.record.use_count = 2;
        assert_eq!(run(&f, &read(), None).unwrap(), Accounting::ConsumeUse);
    }

    #[test]
    fn a_different_secret_is_wrong_secret() {
        let mut f = fixture();
        f.record.hash = crate::keyring::TokenHash::from_bytes([0; 32]);
        assert!(matches!(
            run(&f, &read(), None),
            Err(ValidationError::WrongSecret)
        ));
    }

    #[test]
    fn a_record_hashed_under_a_missing_key_is_unknown_hash_key() {
        let mut f = fixture();
        f.record.hash_key_id = KeyId::new(9);
        assert!(matches!(
            run(&f, &read(), None),
            Err(ValidationError::UnknownHashKey(key)) if key == KeyId::new(9)
        ));
    }

    #[test]
    fn a_token_issued_under_another_prefix_is_foreign() {
        let mut f = fixture();
        f.record.prefix = "acme_test".to_owned();
        assert!(matches!(
            run(&f, &read(), None),
            Err(ValidationError::ForeignPrefix)
        ));
    }

    #[test]
    fn a_revoked_token_is_revoked_even_when_also_expired() {
        let mut f = fixture();
        f.record.expires_at = Some(NOW);
        f.record.revocation = Some(Revocation {
            at: NOW - time::Duration::minutes(1),
            reason: "test".to_owned(),
            actor: None,
        });
        assert!(matches!(
            run(&f, &read(), None),
            Err(ValidationError::Revoked)
        ));
    }

    #[test]
    fn expiry_is_exclusive() {
        let mut f = fixture();
        f.record.expires_at = Some(NOW);
        assert!(matches!(
            run(&f, &read(), None),
            Err(ValidationError::Expired)
        ));
        f.record.expires_at = Some(NOW + time::Duration::microseconds(1));
        assert!(run(&f, &read(), None).is_ok());
    }

    #[test]
    fn a_token_before_its_not_before_is_not_yet_valid() {
        let mut f = fixture();
        f.record.not_before = Some(NOW + time::Duration::seconds(1));
        assert!(matches!(
            run(&f, &read(), None),
            Err(ValidationError::NotYetValid)
        ));
    }

    #[test]
    fn an_idle_token_is_idle_expired_unless_this_process_used_it_lately() {
        let mut f = fixture();
        f.record.idle_timeout = Some(Duration::from_secs(600));
        assert!(matches!(
            run(&f, &read(), None),
            Err(ValidationError::IdleExpired)
        ));
        let buffered = Some(NOW - time::Duration::seconds(60));
        assert_eq!(run(&f, &read(), buffered).unwrap(), Accounting::Coalesce);
    }

    #[test]
    fn a_used_up_token_is_use_limit_reached() {
        let mut f = fixture();
        f.record.max_uses = Some(3);
        f.record.use_count = 3;
        assert!(matches!(
            run(&f, &read(), None),
            Err(ValidationError::UseLimitReached)
        ));
    }

    #[test]
    fn missing_scopes_are_named_and_checked_after_the_state() {
        let f = fixture();
        let write: Scope = "widgets:write".parse().unwrap();
        let required = vec![read()[0].clone(), write.clone()];
        match run(&f, &required, None) {
            Err(ValidationError::InsufficientScope { missing }) => assert_eq!(missing, vec![write]),
            other => panic!("expected InsufficientScope, got {other:?}"),
        }
        let mut revoked = fixture();
        revoked.record.revocation = Some(Revocation {
            at: NOW,
            reason: "test".to_owned(),
            actor: None,
        });
        let required = vec!["widgets:write".parse().unwrap()];
        assert!(matches!(
            run(&revoked, &required, None),
            Err(ValidationError::Revoked)
        ));
    }
}
