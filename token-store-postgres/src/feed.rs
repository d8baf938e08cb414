//! The revocation feed: `LISTEN` on the schema's channel, with reconnection and interruption
//! notices.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::stream;
use sqlx::PgPool;
use sqlx::postgres::{PgConnection, PgListener, PgPoolOptions};
use token_core::store::{RevocationNotice, RevocationStream};
use token_core::{StoreError, TokenId};
use tokio::sync::watch;

use crate::PgStore;
use crate::error::{backend, backend_in};

/// Most ids in one notification payload (PostgreSQL caps payloads below 8000 bytes; an id and
/// its separator take 23, the send-time stamp at most 22).
pub(crate) const IDS_PER_NOTIFICATION: usize = 300;

/// First wait before re-opening a lost listener connection; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What starts a payload's send-time stamp: `@<microseconds since the Unix epoch> ` (base62 ids
/// never contain an `@`). Receivers subtract it from their own clock for
/// `token_feed_notification_lag_seconds`; payloads without one (from an older sender) are read
/// all the same.
const SENT_AT: char = '@';

/// `body` stamped with the sender's wall clock now.
fn stamped(body: &str) -> String {
    format!("{SENT_AT}{} {body}", unix_micros_now())
}

fn unix_micros_now() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX)
}

/// The payloads announcing `ids`: a send-time stamp, then base62 ids separated by single spaces.
pub(crate) fn payloads(ids: &[TokenId]) -> Vec<String> {
    ids.chunks(IDS_PER_NOTIFICATION)
        .map(|chunk| {
            let ids = chunk
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ");
            stamped(&ids)
        })
        .collect()
}

/// Announces `revoked` on the store's channel from inside the revoking transaction `conn`:
/// PostgreSQL delivers the notifications when (and only if) it commits.
pub(crate) async fn announce(
    store: &PgStore,
    conn: &mut PgConnection,
    revoked: &[TokenId],
) -> Result<(), StoreError> {
    for payload in payloads(revoked) {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&store.inner.channel)
            .bind(payload)
            .execute(&mut *conn)
            .await
            .map_err(backend_in)?;
    }
    Ok(())
}

/// What starts the payload of a rotation's notice (base62 ids never contain a `:`), so a
/// rotated predecessor is announced as [`RevocationNotice::Changed`], not as revoked.
const CHANGED: &str = "changed:";

/// Announces, from inside the changing transaction `conn`, that `changed` were suspended,
/// resumed or narrowed ([`RevocationNotice::Changed`]); delivered when (and only if) it commits.
pub(crate) async fn announce_changed(
    store: &PgStore,
    conn: &mut PgConnection,
    changed: &[TokenId],
) -> Result<(), StoreError> {
    for chunk in changed.chunks(IDS_PER_NOTIFICATION) {
        let ids: Vec<String> = chunk.iter().map(ToString::to_string).collect();
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&store.inner.channel)
            .bind(stamped(&format!("{CHANGED}{}", ids.join(" "))))
            .execute(&mut *conn)
            .await
            .map_err(backend_in)?;
    }
    Ok(())
}

/// Announces, from inside the rotating transaction `conn`, that the rotation shortened
/// `predecessor`'s life; delivered when (and only if) it commits.
pub(crate) async fn announce_rotation(
    store: &PgStore,
    conn: &mut PgConnection,
    predecessor: TokenId,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(&store.inner.channel)
        .bind(stamped(&format!("{CHANGED}{predecessor}")))
        .execute(&mut *conn)
        .await
        .map_err(backend_in)?;
    Ok(())
}

/// A notification read off the channel.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Received {
    pub(crate) notice: RevocationNotice,
    /// The sender's wall clock when it announced the change, in microseconds since the Unix
    /// epoch; `None` from a sender that does not stamp its payloads.
    pub(crate) sent_at_us: Option<i64>,
}

/// The notice a payload carries; `None` when it is malformed (the feed then reports an
/// interruption).
pub(crate) fn parse_notice(payload: &str) -> Option<Received> {
    let (sent_at_us, body) = match payload.strip_prefix(SENT_AT) {
        Some(stamped) => {
            let (micros, body) = stamped.split_once(' ')?;
            (Some(micros.parse::<i64>().ok()?), body)
        }
        None => (None, payload),
    };
    let notice = match body.strip_prefix(CHANGED) {
        Some(ids) => parse_payload(ids).map(RevocationNotice::Changed),
        None => parse_payload(body).map(RevocationNotice::Revoked),
    }?;
    Some(Received { notice, sent_at_us })
}

/// Records how long a notice took from its sender to this listener (clamped at zero: the
/// clocks of two hosts may disagree).
fn record_lag(sent_at_us: Option<i64>) {
    if let Some(sent) = sent_at_us {
        let lag_us = unix_micros_now().saturating_sub(sent).max(0);
        #[allow(clippy::cast_precision_loss)] // microseconds of lag fit an f64 exactly
        let lag = lag_us as f64 / 1e6;
        metrics::histogram!("token_feed_notification_lag_seconds", "store" => "postgres")
            .record(lag);
    }
}

/// Parses a payload of ids; `None` when it is malformed.
pub(crate) fn parse_payload(payload: &str) -> Option<Vec<TokenId>> {
    let ids: Vec<TokenId> = payload
        .split(' ')
        .map(|part| part.parse().ok())
        .collect::<Option<_>>()?;
    (!ids.is_empty()).then_some(ids)
}

struct Feed {
    pool: PgPool,
    channel: String,
    listener: Option<PgListener>,
    closed: watch::Receiver<()>,
    pending: VecDeque<RevocationNotice>,
    backoff: Duration,
}

impl Drop for Feed {
    /// sqlx's listener (and the pooled connection it holds) spawn their cleanup on the current
    /// Tokio runtime when dropped, and panic outside one: a host that drops the stream after its
    /// runtime ended would abort. Outside a runtime, the listener is dropped inside a
    /// short-lived one instead.
    fn drop(&mut self) {
        if let Some(listener) = self.listener.take() {
            crate::drop_in_runtime(listener);
        }
    }
}

async fn listen(pool: &PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.ignore_pool_close_event(true);
    listener.eager_reconnect(true);
    listener.listen(channel).await?;
    Ok(listener)
}

/// [`TokenStore::subscribe_revocations`](token_core::TokenStore::subscribe_revocations): opens a
/// dedicated connection (not one of the store's pool, so a subscription never takes a slot from
/// queries) and starts listening before returning, so every revocation committed after this
/// returns is delivered or followed by an interruption notice. The stream ends when the last
/// clone of `store` is dropped.
pub(crate) async fn subscribe(store: &PgStore) -> Result<RevocationStream, StoreError> {
    let store_pool = &store.inner.pool;
    let channel = store.inner.channel.clone();
    let closed = store.inner.closed.subscribe();
    let connect = (*store_pool.connect_options()).clone();
    let name = format!(
        "{}/feed",
        connect
            .get_application_name()
            .unwrap_or(crate::options::DEFAULT_APPLICATION_NAME)
    );
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        .test_before_acquire(false)
        .acquire_timeout(store_pool.options().get_acquire_timeout())
        .connect_lazy_with(connect.application_name(&name));
    let listener = listen(&pool, &channel).await.map_err(backend)?;
    let feed = Feed {
        pool,
        channel,
        listener: Some(listener),
        closed,
        pending: VecDeque::new(),
        backoff: FIRST_BACKOFF,
    };
    Ok(Box::pin(stream::unfold(feed, |mut feed| async move {
        let notice = feed.next().await?;
        Some((notice, feed))
    })))
}

impl Feed {
    /// The next notice; `None` once the store is dropped.
    async fn next(&mut self) -> Option<RevocationNotice> {
        loop {
            if let Some(notice) = self.pending.pop_front() {
                return Some(notice);
            }
            let Some(listener) = self.listener.as_mut() else {
                // Reconnecting: wait, retry, and announce the interruption once listening again
                // (revocations committed while nobody listened were missed).
                tokio::select! {
                    _ = self.closed.changed() => return None,
                    () = tokio::time::sleep(self.backoff) => {}
                }
                let attempt = tokio::select! {
                    _ = self.closed.changed() => return None,
                    result = listen(&self.pool, &self.channel) => result,
                };
                match attempt {
                    Ok(listener) => {
                        self.listener = Some(listener);
                        self.backoff = FIRST_BACKOFF;
                        metrics::counter!("token_feed_reconnects_total", "store" => "postgres")
                            .increment(1);
                        return Some(RevocationNotice::Interrupted);
                    }
                    Err(_) => {
                        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            };
            let received = tokio::select! {
                _ = self.closed.changed() => return None,
                received = listener.try_recv() => received,
            };
            return Some(match received {
                Ok(Some(notification)) => match parse_notice(notification.payload()) {
                    Some(received) => {
                        record_lag(received.sent_at_us);
                        received.notice
                    }
                    // Unreadable: a revocation may hide in it, so caches must flush.
                    None => {
                        metrics::counter!("token_feed_interruptions_total", "cause" => "unreadable")
                            .increment(1);
                        RevocationNotice::Interrupted
                    }
                },
                // The connection was lost and sqlx re-established it (and re-ran LISTEN) before
                // returning: anything sent in between was missed.
                Ok(None) => {
                    metrics::counter!("token_feed_interruptions_total", "cause" => "reconnected")
                        .increment(1);
                    RevocationNotice::Interrupted
                }
                // The connection was lost and could not be re-established yet: report the loss
                // now (caches flush while the database is unreachable) and again once listening.
                Err(_) => {
                    self.listener = None;
                    metrics::counter!("token_feed_interruptions_total", "cause" => "lost")
                        .increment(1);
                    RevocationNotice::Interrupted
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_fit() {
        let ids: Vec<TokenId> = (0..=700u16)
            .map(|i| {
                let mut bytes = [0xffu8; 16];
                bytes[..2].copy_from_slice(&i.to_be_bytes());
                TokenId::from_bytes(bytes)
            })
            .collect();
        let chunks = payloads(&ids);
        assert_eq!(chunks.len(), 3);
        let mut back = Vec::new();
        let before = unix_micros_now();
        for chunk in &chunks {
            assert!(chunk.len() < 8000);
            let received = parse_notice(chunk).unwrap_or_else(|| panic!("unreadable {chunk}"));
            let sent = received.sent_at_us.unwrap_or_else(|| panic!("no stamp"));
            assert!(sent <= unix_micros_now() && sent + 60_000_000 > before);
            match received.notice {
                RevocationNotice::Revoked(ids) => back.extend(ids),
                other => panic!("not a revocation: {other:?}"),
            }
        }
        assert_eq!(back, ids);
        // The longest payload, with the longest stamp, still fits.
        let longest = format!(
            "{SENT_AT}{} {}",
            i64::MIN,
            &chunks[0][chunks[0].find(' ').map_or(0, |i| i + 1)..]
        );
        assert!(longest.len() < 8000, "{}", longest.len());
    }

    #[test]
    fn rotation_payloads_are_changed_notices_not_revocations() {
        let id = TokenId::from_bytes([7; 16]);
        assert_eq!(
            parse_notice(&format!("{CHANGED}{id}")).map(|r| r.notice),
            Some(RevocationNotice::Changed(vec![id]))
        );
        assert_eq!(
            parse_notice(&stamped(&format!("{CHANGED}{id}"))).map(|r| r.notice),
            Some(RevocationNotice::Changed(vec![id]))
        );
        assert_eq!(
            parse_notice(&id.to_string()),
            Some(Received {
                notice: RevocationNotice::Revoked(vec![id]),
                sent_at_us: None
            })
        );
        assert_eq!(parse_notice(CHANGED), None);
    }

    #[test]
    fn malformed_payloads_are_refused() {
        for bad in ["", " ", "abc", "0000000000000000000000 x", "\u{0}"] {
            assert_eq!(parse_payload(bad), None, "{bad:?}");
        }
        let id = TokenId::from_bytes([7; 16]);
        for bad in [
            format!("@ {id}"),
            format!("@12x {id}"),
            format!("@12{id}"),
            "@12 ".to_owned(),
            format!("@1 @2 {id}"),
        ] {
            assert_eq!(parse_notice(&bad), None, "{bad:?}");
        }
    }
}
