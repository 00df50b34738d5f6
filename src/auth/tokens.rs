//! Bearer tokens: generated, stored as SHA-256 hashes, checked in constant time.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AuthConfig, Role, TokenEntry};

/// The SHA-256 of a token, in lower-case hex: what a configuration stores.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.trim().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh token for `role`: the role's name and 32 random bytes in hex. The role in the
/// text is only a reminder for people; the node decides the role by the configured hash.
pub fn new_token(role: Role) -> String {
    let bytes: [u8; 32] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("licd-{role}-{hex}")
}

/// Who made a request, once its token was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's role.
    pub role: Role,
    /// The token's name (configured, else derived from its hash), or `anonymous`: what a
    /// rate limit counts by.
    pub name: Arc<str>,
}

/// Why a token configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// A configured hash is not 64 hex digits.
    #[error("token {name:?}: sha256 must be 64 hex digits (licd token new prints it)")]
    BadHash {
        /// The entry's name, or its position.
        name: String,
    },
    /// An entry of `LICD_TOKENS` is not `role:sha256[:name]`.
    #[error("LICD_TOKENS entry {0:?} is not role:sha256 or role:sha256:name")]
    BadEnvEntry(String),
    /// A role name is unknown.
    #[error("{0}")]
    BadRole(String),
}

struct Entry {
    role: Role,
    hash: [u8; 32],
    name: Arc<str>,
}

/// The tokens a node accepts.
pub struct Tokens {
    entries: Vec<Entry>,
    allow_anonymous_clients: bool,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("count", &self.entries.len())
            .field("allow_anonymous_clients", &self.allow_anonymous_clients)
            .finish()
    }
}

fn decode_hash(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl Tokens {
    /// The tokens of a configuration, plus `legacy_admin` (the plain admin token of
    /// `admin_token_file` / `LICD_ADMIN_TOKEN`, hashed here) unless it is empty.
    pub fn new(config: &AuthConfig, legacy_admin: &str) -> Result<Tokens, TokenError> {
        let mut entries = Vec::new();
        for (i, t) in config.tokens.iter().enumerate() {
            let name = t
                .name
                .clone()
                .unwrap_or_else(|| format!("{}-{}", t.role, t.sha256.get(..8).unwrap_or("token")));
            let hash = decode_hash(&t.sha256).ok_or_else(|| TokenError::BadHash {
                name: t.name.clone().unwrap_or_else(|| format!("#{}", i + 1)),
            })?;
            entries.push(Entry {
                role: t.role,
                hash,
                name: name.into(),
            });
        }
        if !legacy_admin.trim().is_empty() {
            let hash = decode_hash(&hash_token(legacy_admin)).expect("a SHA-256 in hex");
            entries.push(Entry {
                role: Role::Admin,
                hash,
                name: "admin-token".into(),
            });
        }
        Ok(Tokens {
            entries,
            allow_anonymous_clients: config.allow_anonymous_clients,
        })
    }

    /// The caller a presented token belongs to, if it is configured. Every configured hash
    /// is compared, in constant time, whichever matches.
    pub fn verify(&self, presented: &str) -> Option<Caller> {
        let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.hash.ct_eq(&digest)) && found.is_none() {
                found = Some(Caller {
                    role: entry.role,
                    name: entry.name.clone(),
                });
            }
        }
        found
    }

    /// The caller of a request without a token, when anonymous clients are allowed.
    pub fn anonymous(&self) -> Option<Caller> {
        self.allow_anonymous_clients.then(|| Caller {
            role: Role::Client,
            name: "anonymous".into(),
        })
    }

    /// How many tokens of each role are configured, for the start-up log.
    pub fn count(&self, role: Role) -> usize {
        self.entries.iter().filter(|e| e.role == role).count()
    }
}

/// Parses `LICD_TOKENS`: entries `role:sha256` or `role:sha256:name`, comma-separated.
pub fn parse_env_tokens(text: &str) -> Result<Vec<TokenEntry>, TokenError> {
    text.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let mut parts = entry.splitn(3, ':');
            let (Some(role), Some(sha256)) = (parts.next(), parts.next()) else {
                return Err(TokenError::BadEnvEntry(entry.to_string()));
            };
            let role = role.parse::<Role>().map_err(TokenError::BadRole)?;
            Ok(TokenEntry {
                role,
                sha256: sha256.trim().to_string(),
                name: parts.next().map(|n| n.trim().to_string()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(entries: Vec<TokenEntry>) -> AuthConfig {
        AuthConfig {
            tokens: entries,
            allow_anonymous_clients: false,
        }
    }

    fn entry(role: Role, token: &str, name: &str) -> TokenEntry {
        TokenEntry {
            role,
            sha256: hash_token(token),
            name: Some(name.into()),
        }
    }

    #[test]
    fn a_token_is_known_by_its_hash_only() {
        let client = new_token(Role::Client);
        let tokens = Tokens::new(&config(vec![entry(Role::Client, &client, "apps")]), "").unwrap();
        let caller = tokens.verify(&client).unwrap();
        assert_eq!(caller.role, Role::Client);
        assert_eq!(&*caller.name, "apps");
        assert!(tokens.verify(&new_token(Role::Client)).is_none());
        assert!(
            tokens.verify(&hash_token(&client)).is_none(),
            "the hash is no token"
        );
        assert!(tokens.anonymous().is_none());
        let open = Tokens::new(
            &AuthConfig {
                tokens: Vec::new(),
                allow_anonymous_clients: true,
            },
            "",
        )
        .unwrap();
        // Every anonymous caller is one caller to the rate limit.
        let anonymous = open.anonymous().unwrap();
        assert_eq!(anonymous.role, Role::Client);
        assert_eq!(open.anonymous(), Some(anonymous));
    }

    #[test]
    fn two_tokens_of_one_role_both_work_and_the_legacy_admin_token_is_an_admin() {
        let (old, new) = (new_token(Role::Client), new_token(Role::Client));
        let tokens = Tokens::new(
            &config(vec![
                entry(Role::Client, &old, "old"),
                entry(Role::Client, &new, "new"),
            ]),
            "legacy-admin-token-0123",
        )
        .unwrap();
        assert_eq!(&*tokens.verify(&old).unwrap().name, "old");
        assert_eq!(&*tokens.verify(&new).unwrap().name, "new");
        let admin = tokens.verify("legacy-admin-token-0123").unwrap();
        assert_eq!(admin.role, Role::Admin);
        assert_eq!(tokens.count(Role::Client), 2);
        // Tokens of one name are one caller to the rate limit (a rotation keeps its rate).
        let (a, b) = (new_token(Role::Client), new_token(Role::Client));
        let same = Tokens::new(
            &config(vec![
                entry(Role::Client, &a, "apps"),
                entry(Role::Client, &b, "apps"),
            ]),
            "",
        )
        .unwrap();
        assert_eq!(same.verify(&a), same.verify(&b));
    }

    #[test]
    fn a_bad_hash_or_env_entry_is_refused() {
        let bad = TokenEntry {
            role: Role::Operator,
            sha256: "abc".into(),
            name: None,
        };
        assert!(matches!(
            Tokens::new(&config(vec![bad]), ""),
            Err(TokenError::BadHash { .. })
        ));
        let h = hash_token("x");
        let parsed = parse_env_tokens(&format!("client:{h}:apps, operator:{h}")).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].name.as_deref(), Some("apps"));
        assert_eq!(parsed[1].role, Role::Operator);
        assert!(parse_env_tokens("client").is_err());
        assert!(parse_env_tokens(&format!("root:{h}")).is_err());
    }
}
