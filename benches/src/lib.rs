//! Shared fixtures for the benchmarks: table sizes from the environment, the data directory, and
//! the random access pattern.

use std::path::PathBuf;

pub mod mixed_text;

/// The benches' in-memory manager: the fixed bench key (id 1), prefix `acme_live`, no default
/// idle timeout (so a long run never idles a token out).
pub fn memory_manager() -> token_core::TokenManager {
    use token_core::{HashKey, KeyId, Keyring, Policy, TokenManager};
    TokenManager::builder(
        token_store_memory::MemoryStore::new(),
        Keyring::new(HashKey::new(KeyId::new(1), [7; 32])),
    )
    .prefix("acme_live")
    .expect("prefix")
    .policy(
        Policy::builder()
            .no_default_idle_timeout()
            .build()
            .expect("policy"),
    )
    .build()
    .expect("manager")
}

/// The number of tokens named by environment variable `var` (default `default`).
pub fn token_count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `target/bench-data/`, created if missing: large tables are built once and cached here.
pub fn data_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    std::fs::create_dir_all(&dir).expect("bench data dir");
    dir
}

/// A small deterministic generator for the random access pattern (xorshift64*).
///
/// ```
/// let mut walk = benches::Walk(0x9E37_79B9_7F4A_7C15);
/// assert!((0..100).all(|_| walk.next_index(10) < 10));
/// ```
pub struct Walk(pub u64);

impl Walk {
    /// The next index in `0..len`.
    pub fn next_index(&mut self, len: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % len as u64) as usize
    }
}

/// The JWT arm the benches compare against: HS256 tokens carrying a claim set comparable to a
/// token record (`sub`, `scope`, `exp`, `iat`, `jti`), verified with `jsonwebtoken`, plus the
/// scope check a JWT verifier must still do.
///
/// ```
/// let jwts = benches::Jwts::new(&[7; 32], "widgets:read widgets:write", 10);
/// assert!(jwts.verify(3, "widgets:read"));
/// assert!(!jwts.verify(3, "billing"));
/// ```
pub struct Jwts {
    tokens: Vec<String>,
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    sub: String,
    scope: String,
    exp: u64,
    iat: u64,
    jti: String,
}

impl Jwts {
    /// `count` tokens signed with `key`, each carrying `scope` (space-separated), valid an hour.
    pub fn new(key: &[u8], scope: &str, count: usize) -> Self {
        use jsonwebtoken::{Algorithm, EncodingKey, Header};
        let encoding = EncodingKey::from_secret(key).expect("encoding key");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let tokens = (0..count)
            .map(|i| {
                let claims = Claims {
                    sub: format!("user:{i}"),
                    scope: scope.to_owned(),
                    exp: now + 3600,
                    iat: now,
                    jti: format!("{i:022}"),
                };
                jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &encoding)
                    .expect("encode")
            })
            .collect();
        Self {
            tokens,
            key: jsonwebtoken::DecodingKey::from_secret(key).expect("decoding key"),
            validation: jsonwebtoken::Validation::new(Algorithm::HS256),
        }
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Verifies token `index` and checks that its scope claim holds `required`.
    pub fn verify(&self, index: usize, required: &str) -> bool {
        let data = jsonwebtoken::decode::<Claims>(&self.tokens[index], &self.key, &self.validation)
            .expect("jwt");
        data.claims.scope.split(' ').any(|s| s == required)
    }
}
