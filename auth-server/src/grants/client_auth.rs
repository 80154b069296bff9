//! Client authentication at the token endpoint: `client_secret_basic` and
//! `client_secret_post` (RFC 6749 §2.3.1), and `none` for public clients (RFC 6749 §2.1,
//! RFC 7591 §2: `client_id` alone, for clients registered public), with a short-lived cache of
//! client records.
//!
//! The cache keeps the hot path off the database; its entries live [`CLIENT_CACHE_TTL`] by the
//! server's [`Clock`], so a client disabled, deleted or given a new secret from the CLI is
//! refused within that time. An entry fetched "in the future" (the clock was set back) is
//! stale. [`ClientAuthenticator::authenticate_read`] also tells when the record it checked was
//! read, so a grant can tell whether that record is still [current](ClientAuthenticator::is_current)
//! when its token is signed.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use time::OffsetDateTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};

use super::request::{Param, decode_form_component, is_acceptable};
use super::{GrantError, TokenRequest};
use crate::clock::Clock;
use crate::model::Client;
use crate::secrets::SecretHasher;
use crate::store::Store;

/// How long a client record is served from memory.
pub const CLIENT_CACHE_TTL: Duration = Duration::from_secs(2);
/// Upper bound on cached clients; the cache is cleared when it is full.
const CLIENT_CACHE_CAPACITY: usize = 10_000;

const AUTH_FAILED: &str = "client authentication failed";

/// Credentials presented by a client.
pub struct ClientCredentials {
    pub client_id: String,
    /// `None`: the client sent only its `client_id`, which only a public client may do.
    pub secret: Option<SecretString>,
}

/// Extracts the client's credentials, enforcing one authentication method per request.
///
/// A client id or secret over its cap or holding a control character, in the body or in the
/// header, is `invalid_client` before anything is looked up.
pub fn credentials(request: &TokenRequest) -> Result<ClientCredentials, GrantError> {
    let basic = request.authorization().map(parse_basic).transpose()?;
    let malformed = |_| GrantError::InvalidClient(AUTH_FAILED);
    let body_id = request.param(Param::ClientId).map_err(malformed)?;
    let body_secret = request.param(Param::ClientSecret).map_err(malformed)?;
    match (basic, body_id, body_secret) {
        (Some(_), _, Some(_)) => Err(GrantError::InvalidRequest(
            "use only one client authentication method",
        )),
        (Some(basic), Some(id), None) if id != basic.client_id => Err(GrantError::InvalidRequest(
            "client_id does not match the Authorization header",
        )),
        (Some(basic), _, None) => Ok(basic),
        (None, Some(id), Some(secret)) => Ok(ClientCredentials {
            client_id: id.to_owned(),
            secret: Some(SecretString::from(secret.to_owned())),
        }),
        (None, Some(id), None) => Ok(ClientCredentials {
            client_id: id.to_owned(),
            secret: None,
        }),
        (None, None, _) => Err(GrantError::InvalidClient("client authentication required")),
    }
}

/// Parses `Basic base64(urlencode(id):urlencode(secret))`.
fn parse_basic(header: &str) -> Result<ClientCredentials, GrantError> {
    const MALFORMED: GrantError = GrantError::InvalidClient("malformed HTTP Basic credentials");
    let (scheme, encoded) = header.trim().split_once(' ').ok_or(MALFORMED)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(GrantError::InvalidClient(
            "unsupported client authentication method",
        ));
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| MALFORMED)?;
    let colon = decoded.iter().position(|&b| b == b':').ok_or(MALFORMED)?;
    let (id, secret) = (&decoded[..colon], &decoded[colon + 1..]);
    let client_id = decode_form_component(id).ok_or(MALFORMED)?;
    let secret = decode_form_component(secret).ok_or(MALFORMED)?;
    if client_id.is_empty()
        || !is_acceptable(Param::ClientId, &client_id)
        || !is_acceptable(Param::ClientSecret, &secret)
    {
        return Err(MALFORMED);
    }
    Ok(ClientCredentials {
        client_id,
        secret: Some(SecretString::from(secret)),
    })
}

struct CachedClient {
    client: Arc<Client>,
    fetched: OffsetDateTime,
}

impl CachedClient {
    fn is_fresh(&self, now: OffsetDateTime) -> bool {
        is_fresh(self.fetched, now)
    }
}

/// Whether a client record read from the store at `read` may still be relied on at `now`:
/// for less than [`CLIENT_CACHE_TTL`], and not "in the future".
fn is_fresh(read: OffsetDateTime, now: OffsetDateTime) -> bool {
    now >= read && now - read < CLIENT_CACHE_TTL
}

/// A client whose credentials were checked, and when the record they were checked against
/// was read from the store (the server's clock).
pub struct AuthenticatedClient {
    pub client: Arc<Client>,
    pub read_at: OffsetDateTime,
}

/// Checks client credentials against the store, through a short-lived cache.
pub struct ClientAuthenticator {
    store: Arc<dyn Store>,
    hasher: SecretHasher,
    cache: RwLock<HashMap<String, CachedClient>>,
    /// Compared against when the client is unknown, so both failures cost one HMAC.
    dummy_hash: Vec<u8>,
    clock: Arc<dyn Clock>,
}

impl ClientAuthenticator {
    pub fn new(
        store: Arc<dyn Store>,
        hasher: SecretHasher,
        clock: Arc<dyn Clock>,
    ) -> ClientAuthenticator {
        let dummy_hash = hasher.hash("unknown client");
        ClientAuthenticator {
            store,
            hasher,
            cache: RwLock::new(HashMap::new()),
            dummy_hash,
            clock,
        }
    }

    /// Authenticates the request's client; every failure is the same `invalid_client`.
    pub async fn authenticate(&self, request: &TokenRequest) -> Result<Arc<Client>, GrantError> {
        Ok(self.authenticate_read(request).await?.client)
    }

    /// [`authenticate`](Self::authenticate), telling when the client record was read.
    pub async fn authenticate_read(
        &self,
        request: &TokenRequest,
    ) -> Result<AuthenticatedClient, GrantError> {
        let credentials = credentials(request)?;
        let secret = credentials.secret.as_ref().map(|s| s.expose_secret());
        let Some((client, read_at)) = self.lookup(&credentials.client_id).await? else {
            self.hasher
                .verify(secret.unwrap_or_default(), &self.dummy_hash);
            return Err(GrantError::InvalidClient(AUTH_FAILED));
        };
        // A public client has no secret (its stored hash is empty and matches nothing); a
        // confidential one must present its own.
        let authenticated = match secret {
            Some(secret) => self.hasher.verify(secret, &client.secret_hash),
            None => {
                if !client.public {
                    return Err(GrantError::InvalidClient("client authentication required"));
                }
                true
            }
        };
        if !authenticated || client.disabled {
            return Err(GrantError::InvalidClient(AUTH_FAILED));
        }
        Ok(AuthenticatedClient { client, read_at })
    }

    /// Whether a client record read at `read_at` is still within the cache's life now.
    pub fn is_current(&self, read_at: OffsetDateTime) -> bool {
        is_fresh(read_at, self.clock.now())
    }

    /// The client record and when it was read from the store: from the cache while fresh.
    async fn lookup(
        &self,
        client_id: &str,
    ) -> Result<Option<(Arc<Client>, OffsetDateTime)>, GrantError> {
        let now = self.clock.now();
        if let Ok(cache) = self.cache.read()
            && let Some(entry) = cache.get(client_id)
            && entry.is_fresh(now)
        {
            return Ok(Some((entry.client.clone(), entry.fetched)));
        }
        let found = self.store.find_client(client_id).await?.map(Arc::new);
        if let Ok(mut cache) = self.cache.write() {
            match &found {
                Some(client) => {
                    if cache.len() >= CLIENT_CACHE_CAPACITY {
                        cache.retain(|_, entry| entry.is_fresh(now));
                        if cache.len() >= CLIENT_CACHE_CAPACITY {
                            cache.clear();
                        }
                    }
                    cache.insert(
                        client_id.to_owned(),
                        CachedClient {
                            client: client.clone(),
                            fetched: now,
                        },
                    );
                }
                None => {
                    cache.remove(client_id);
                }
            }
        }
        Ok(found.map(|client| (client, now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &str, auth: Option<&str>) -> TokenRequest {
        TokenRequest::from_form(body.as_bytes(), auth.map(str::as_bytes)).unwrap()
    }

    fn basic(raw: &str) -> String {
        format!("Basic {}", STANDARD.encode(raw))
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let creds = credentials(&request("", Some(&basic("my%20id:s%3Acret+x")))).unwrap();
        assert_eq!(creds.client_id, "my id");
        assert_eq!(creds.secret.as_ref().unwrap().expose_secret(), "s:cret x");
    }

    #[test]
    fn post_credentials() {
        let creds = credentials(&request("client_id=abc&client_secret=xyz", None)).unwrap();
        assert_eq!(creds.client_id, "abc");
        assert_eq!(creds.secret.as_ref().unwrap().expose_secret(), "xyz");
    }

    #[test]
    fn table_of_malformed_basic_headers() {
        for header in [
            "Basic",
            "Basic !!!",
            "Basic Zm9v",
            "Bearer abc",
            &basic(":secret"),
            "Basic /w==:",
            &basic("a%00:secret"),
            &basic("a:se%01cret"),
            &basic(&format!("{}:secret", "a".repeat(256))),
            &basic(&format!("a:{}", "s".repeat(256))),
        ] {
            let result = credentials(&request("", Some(header)));
            assert!(
                matches!(result, Err(GrantError::InvalidClient(_))),
                "{header}"
            );
        }
    }

    #[test]
    fn malformed_body_credentials_are_invalid_client() {
        for body in [
            "client_id=%00&client_secret=x",
            "client_id=a&client_secret=%0A",
            "client_id=%C2%9F&client_secret=x",
        ] {
            assert!(
                matches!(
                    credentials(&request(body, None)),
                    Err(GrantError::InvalidClient(_))
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn two_methods_at_once_are_invalid_request() {
        let result = credentials(&request("client_id=a&client_secret=b", Some(&basic("a:b"))));
        assert!(matches!(result, Err(GrantError::InvalidRequest(_))));
    }

    #[test]
    fn missing_credentials_are_invalid_client() {
        for body in ["", "client_id=a", "client_secret=b"] {
            assert!(matches!(
                credentials(&request(body, None)),
                Err(GrantError::InvalidClient(_))
            ));
        }
    }
}
