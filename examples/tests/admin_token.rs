//! How the example server hands out its bootstrap admin token: written from the token's own
//! zeroizing buffer, never through a `String`, and never shown by `Debug`.
//!
//! What these tests can prove: the bytes reach the sink as a borrow of `PlaintextToken`'s buffer
//! (same address), in the same vectored call as the line's newline, which is what makes std's
//! stdout `LineWriter` pass them to the descriptor without copying them into its buffer. What they
//! cannot: that the OS, the terminal, or a pipe reader keeps no copy; that the compiler left no
//! stray copy in a register or on the stack.

use std::io::{self, IoSlice, Write};

use token_core::{HashKey, KeyId, Keyring, PlaintextToken, TokenManager, TokenPrefix};
use token_store_memory::MemoryStore;

use examples::server::{bootstrap_admin, write_admin_token};

fn token() -> PlaintextToken {
    PlaintextToken::generate(&TokenPrefix::new("example").unwrap()).unwrap()
}

/// One call to the sink: where its slices were (address, length) and what they held.
struct Call {
    slices: Vec<(usize, usize)>,
    offered: Vec<u8>,
}

/// Records every call to it; takes at most `limit` bytes per call.
struct Recorder {
    calls: Vec<Call>,
    bytes: Vec<u8>,
    limit: usize,
}

impl Recorder {
    fn taking(limit: usize) -> Self {
        Self {
            calls: Vec::new(),
            bytes: Vec::new(),
            limit,
        }
    }

    fn take(&mut self, bufs: &[&[u8]]) -> usize {
        self.calls.push(Call {
            slices: bufs
                .iter()
                .map(|b| (b.as_ptr() as usize, b.len()))
                .collect(),
            offered: bufs.concat(),
        });
        let mut room = self.limit;
        for buf in bufs {
            let n = buf.len().min(room);
            self.bytes.extend_from_slice(&buf[..n]);
            room -= n;
        }
        self.limit - room
    }
}

impl Write for Recorder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(self.take(&[buf]))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let bufs: Vec<&[u8]> = bufs.iter().map(|b| &**b).collect();
        Ok(self.take(&bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The token reaches the sink as a borrow of its own zeroizing buffer (no copy was made
/// first), in the same call as the line's newline: stdout's `LineWriter` hands such a call
/// straight to the file descriptor, where a call without a newline would be copied into its
/// buffer (which is never wiped).
#[test]
fn admin_token_is_written_from_its_own_buffer_with_the_newline() {
    let token = token();
    let secret = token.expose_secret();
    let mut out = Recorder::taking(usize::MAX);
    write_admin_token(&mut out, &token).unwrap();
    assert_eq!(out.bytes, format!("admin token: {secret}\n").into_bytes());
    let direct = (secret.as_ptr() as usize, secret.len());
    let call = out
        .calls
        .iter()
        .find(|call| call.slices.contains(&direct))
        .expect("the token was copied before it reached the sink");
    assert!(
        call.offered.ends_with(b"\n"),
        "the token was written in a call without the line's newline: {:?}",
        out.calls.iter().map(|c| &c.slices).collect::<Vec<_>>()
    );
}

#[test]
fn admin_token_line_survives_short_writes() {
    let token = token();
    let mut out = Recorder::taking(5);
    write_admin_token(&mut out, &token).unwrap();
    let expected = format!("admin token: {}\n", token.expose_secret());
    assert_eq!(out.bytes, expected.into_bytes());
}

#[tokio::test]
async fn bootstrap_admin_debug_hides_the_secret() {
    let keyring = Keyring::new(HashKey::new(KeyId::new(1), [3; 32]));
    let manager = TokenManager::builder(MemoryStore::new(), keyring)
        .build()
        .unwrap();
    let admin = bootstrap_admin(&manager).await.unwrap();
    let debug = format!("{admin:?} {:?}", admin.token);
    assert!(!debug.contains(admin.token.expose_secret()), "{debug}");
    assert!(debug.contains(&admin.token.id().to_string()), "{debug}");
}
