//! Fetching the audio file of a job without becoming an SSRF proxy: http(s) only, every hop's
//! host resolved here and checked against non-public address ranges *after* DNS resolution,
//! the connection pinned to the checked addresses (so a second DNS answer cannot differ),
//! redirects followed by hand (at most `max_redirects`, each hop checked again), a byte limit
//! enforced while streaming and one timeout over the whole download.
//!
//! Non-public addresses are refused unless `allow_private` is set, except for the exact origins
//! (scheme, host, port) listed in `allowed_origins` (the one-process stack's own `/samples/`).
//! What the owner of a transcription is told about a failed download is
//! [`DownloadError::public_message`]: one generic text and a reason class, never the address,
//! port or connection error of the host, so the error cannot be used to scan internal networks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use reqwest::{StatusCode, Url};
use tokio::io::AsyncWriteExt;

/// How every owner-facing download failure text begins.
pub const DOWNLOAD_FAILED: &str = "the audio could not be downloaded";

/// Limits of one download.
#[derive(Debug, Clone)]
pub struct DownloadLimits {
    /// Largest accepted body, in bytes.
    pub max_bytes: u64,
    /// Time for the whole download, redirects included.
    pub timeout: Duration,
    /// Time to establish one connection.
    pub connect_timeout: Duration,
    /// Redirects followed before giving up.
    pub max_redirects: usize,
    /// Allow loopback, private, link-local and other non-public addresses (tests, dev setups).
    pub allow_private: bool,
    /// Origins fetched even when they resolve to non-public addresses, compared as scheme,
    /// host and port (e.g. the stack's own `http://127.0.0.1:8081`). Everything else private
    /// stays refused.
    pub allowed_origins: Vec<Url>,
}

impl Default for DownloadLimits {
    fn default() -> Self {
        DownloadLimits {
            max_bytes: 50 * 1024 * 1024,
            timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            max_redirects: 3,
            allow_private: false,
            allowed_origins: Vec::new(),
        }
    }
}

/// Why a download failed. [`is_permanent`](Self::is_permanent) tells whether a retry can help.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("invalid audio URL: {0}")]
    InvalidUrl(String),
    #[error("unsupported URL scheme `{0}` (only http and https)")]
    Scheme(String),
    #[error("refusing to fetch from {host}: it resolves to the non-public address {addr}")]
    Blocked { host: String, addr: IpAddr },
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
    #[error("redirect without a usable Location header")]
    BadRedirect,
    #[error("audio file larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("audio server answered HTTP {0}")]
    Status(u16),
    #[error("download timed out after {0:?}")]
    Timeout(Duration),
    #[error("download failed: {0}")]
    Transport(String),
    #[error("cannot store the audio file: {0}")]
    Io(#[from] std::io::Error),
}

impl DownloadError {
    /// The reason class shown to the owner (`refused_address`, `timeout`, `too_large`,
    /// `http_status`, `unreachable`, …): what kind of failure, without any detail of the host.
    pub fn class(&self) -> &'static str {
        match self {
            DownloadError::InvalidUrl(_) => "invalid_url",
            DownloadError::Scheme(_) => "unsupported_scheme",
            DownloadError::Blocked { .. } => "refused_address",
            DownloadError::TooManyRedirects(_) | DownloadError::BadRedirect => "bad_redirect",
            DownloadError::TooLarge { .. } => "too_large",
            DownloadError::Status(_) => "http_status",
            DownloadError::Timeout(_) => "timeout",
            DownloadError::Resolve { .. } | DownloadError::Transport(_) => "unreachable",
            DownloadError::Io(_) => "internal",
        }
    }

    /// The text the owner of the transcription sees: `the audio could not be downloaded
    /// (<class>)`. The full error (`Display`) is for the operator's logs only.
    pub fn public_message(&self) -> String {
        format!("{DOWNLOAD_FAILED} ({})", self.class())
    }

    /// `true` when the same request can never succeed: the job should fail for good.
    pub fn is_permanent(&self) -> bool {
        match self {
            DownloadError::InvalidUrl(_)
            | DownloadError::Scheme(_)
            | DownloadError::Blocked { .. }
            | DownloadError::TooManyRedirects(_)
            | DownloadError::BadRedirect
            | DownloadError::TooLarge { .. } => true,
            DownloadError::Status(status) => {
                (400..500).contains(status) && *status != 408 && *status != 429
            }
            DownloadError::Resolve { .. }
            | DownloadError::Timeout(_)
            | DownloadError::Transport(_)
            | DownloadError::Io(_) => false,
        }
    }
}

/// What was downloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub bytes: u64,
    /// The URL after redirects.
    pub final_url: String,
}

/// Downloads audio files under [`DownloadLimits`].
#[derive(Debug, Clone)]
pub struct AudioDownloader {
    limits: DownloadLimits,
}

impl AudioDownloader {
    pub fn new(limits: DownloadLimits) -> Self {
        AudioDownloader { limits }
    }

    pub fn limits(&self) -> &DownloadLimits {
        &self.limits
    }

    /// Downloads `url` into the file `dest` (created or truncated). On error `dest` may hold a
    /// partial file; the caller removes it.
    pub async fn fetch_to(&self, url: &str, dest: &Path) -> Result<Downloaded, DownloadError> {
        let timeout = self.limits.timeout;
        match tokio::time::timeout(timeout, self.fetch(url, dest)).await {
            Ok(result) => result,
            Err(_) => Err(DownloadError::Timeout(timeout)),
        }
    }

    async fn fetch(&self, url: &str, dest: &Path) -> Result<Downloaded, DownloadError> {
        let mut url = Url::parse(url).map_err(|e| DownloadError::InvalidUrl(e.to_string()))?;
        let mut redirects = 0;
        let mut response = loop {
            let response = self.get(&url).await?;
            let status = response.status();
            if !is_followed_redirect(status) {
                break response;
            }
            if redirects == self.limits.max_redirects {
                return Err(DownloadError::TooManyRedirects(self.limits.max_redirects));
            }
            redirects += 1;
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|value| value.to_str().ok())
                .ok_or(DownloadError::BadRedirect)?;
            url = url.join(location).map_err(|_| DownloadError::BadRedirect)?;
            tracing::debug!(%url, redirects, "following redirect");
        };
        let status = response.status();
        if !status.is_success() {
            return Err(DownloadError::Status(status.as_u16()));
        }
        let limit = self.limits.max_bytes;
        if response.content_length().is_some_and(|len| len > limit) {
            return Err(DownloadError::TooLarge { limit });
        }
        let mut file = tokio::fs::File::create(dest).await?;
        let mut total: u64 = 0;
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            total = total.saturating_add(chunk.len() as u64);
            if total > limit {
                return Err(DownloadError::TooLarge { limit });
            }
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        file.sync_all().await?;
        Ok(Downloaded {
            bytes: total,
            final_url: url.to_string(),
        })
    }

    /// One GET without redirects, to an address checked here.
    async fn get(&self, url: &Url) -> Result<reqwest::Response, DownloadError> {
        let scheme = url.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(DownloadError::Scheme(scheme.to_owned()));
        }
        let host = url
            .host_str()
            .ok_or_else(|| DownloadError::InvalidUrl("the URL has no host".into()))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| DownloadError::InvalidUrl("the URL has no port".into()))?;
        let literal = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok();
        let addrs: Vec<SocketAddr> = match literal {
            Some(ip) => vec![SocketAddr::new(ip, port)],
            None => tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| DownloadError::Resolve {
                    host: host.to_owned(),
                    reason: e.to_string(),
                })?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(DownloadError::Resolve {
                host: host.to_owned(),
                reason: "no addresses".into(),
            });
        }
        if !self.limits.allow_private && !self.is_allowed_origin(url) {
            // Any non-public answer refuses the host: connecting to "the public one" would let
            // a hostile DNS answer steer retries.
            if let Some(blocked) = addrs.iter().find(|a| !is_public(a.ip())) {
                return Err(DownloadError::Blocked {
                    host: host.to_owned(),
                    addr: blocked.ip(),
                });
            }
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(self.limits.connect_timeout)
            .user_agent(concat!("transcription-worker/", env!("CARGO_PKG_VERSION")));
        if literal.is_none() {
            // Pin the connection to the addresses checked above.
            builder = builder.resolve_to_addrs(host, &addrs);
        }
        let client = builder.build().map_err(transport)?;
        client.get(url.clone()).send().await.map_err(transport)
    }
}

impl AudioDownloader {
    /// Whether `url` has exactly the scheme, host and port of one of `allowed_origins`.
    fn is_allowed_origin(&self, url: &Url) -> bool {
        self.limits
            .allowed_origins
            .iter()
            .any(|allowed| allowed.origin() == url.origin())
    }
}

fn is_followed_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

fn transport(err: reqwest::Error) -> DownloadError {
    // The full chain (connection refused, TLS alert …) is more useful than the top line.
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    DownloadError::Transport(message)
}

/// Whether `ip` is a globally routable unicast address. Refused: unspecified, loopback,
/// private (RFC 1918), CGNAT (100.64/10), link-local, multicast, broadcast, documentation,
/// benchmarking, reserved (240/4), IETF protocol space (192.0.0/24), IPv6 ULA (fc00::/7),
/// link- and site-local, and IPv4-mapped/compatible, NAT64 and 6to4 forms of refused IPv4.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let refused = a == 0
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || (a == 100 && (b & 0xc0) == 64)
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b & 0xfe) == 18)
        || a >= 240;
    !refused
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if s[..6] == [0; 6] {
        // ::, ::1 and the deprecated IPv4-compatible ::a.b.c.d
        return false;
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return is_public_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return is_public_v4(embedded(s[1], s[2]));
    }
    let refused = ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || (s[0] == 0x2001 && s[1] == 0);
    !refused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_table() {
        let cases = [
            ("8.8.8.8", true),
            ("1.1.1.1", true),
            ("93.184.216.34", true),
            ("100.63.255.255", true),
            ("100.128.0.1", true),
            ("172.32.0.1", true),
            ("0.0.0.0", false),
            ("0.1.2.3", false),
            ("127.0.0.1", false),
            ("127.255.0.9", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("172.31.255.255", false),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("100.64.0.1", false),
            ("100.127.255.255", false),
            ("224.0.0.1", false),
            ("239.255.255.250", false),
            ("255.255.255.255", false),
            ("240.0.0.1", false),
            ("192.0.0.8", false),
            ("192.0.2.1", false),
            ("198.18.0.1", false),
            ("2606:4700:4700::1111", true),
            ("2a00:1450:4001::200e", true),
            ("::", false),
            ("::1", false),
            ("::127.0.0.1", false),
            ("::ffff:127.0.0.1", false),
            ("::ffff:10.0.0.1", false),
            ("::ffff:8.8.8.8", true),
            ("64:ff9b::7f00:1", false),
            ("64:ff9b::808:808", true),
            ("2002:7f00:1::", false),
            ("2002:808:808::", true),
            ("fc00::1", false),
            ("fd12:3456::1", false),
            ("fe80::1", false),
            ("febf::1", false),
            ("fec0::1", false),
            ("ff02::1", false),
            ("2001:db8::1", false),
            ("2001::1", false),
        ];
        for (ip, public) in cases {
            let parsed: IpAddr = ip.parse().unwrap();
            assert_eq!(is_public(parsed), public, "{ip}");
        }
    }

    #[test]
    fn public_messages_name_the_class_only() {
        let blocked = DownloadError::Blocked {
            host: "db.internal".into(),
            addr: "10.0.0.5".parse().unwrap(),
        };
        assert_eq!(
            blocked.public_message(),
            "the audio could not be downloaded (refused_address)"
        );
        let refused = DownloadError::Transport("error sending request: Connection refused".into());
        let dns = DownloadError::Resolve {
            host: "db.internal".into(),
            reason: "no such host".into(),
        };
        assert_eq!(refused.public_message(), dns.public_message());
        assert_eq!(
            DownloadError::Status(404).public_message(),
            "the audio could not be downloaded (http_status)"
        );
        assert_eq!(
            DownloadError::Timeout(Duration::from_secs(1)).public_message(),
            "the audio could not be downloaded (timeout)"
        );
    }

    #[tokio::test]
    async fn only_the_allowed_origin_may_be_private() {
        let downloader = AudioDownloader::new(DownloadLimits {
            allowed_origins: vec![Url::parse("http://127.0.0.1:9/samples/").unwrap()],
            ..DownloadLimits::default()
        });
        assert!(
            downloader.is_allowed_origin(&Url::parse("http://127.0.0.1:9/samples/a.wav").unwrap())
        );
        for other in [
            "http://127.0.0.1:10/samples/a.wav",
            "https://127.0.0.1:9/samples/a.wav",
            "http://localhost:9/samples/a.wav",
            "http://127.0.0.2:9/samples/a.wav",
        ] {
            assert!(
                !downloader.is_allowed_origin(&Url::parse(other).unwrap()),
                "{other}"
            );
            let dest = std::env::temp_dir().join(format!("dl-{}", uuid::Uuid::new_v4().simple()));
            let err = downloader.fetch_to(other, &dest).await.unwrap_err();
            assert_eq!(err.class(), "refused_address", "{other}: {err}");
        }
    }

    #[test]
    fn permanence() {
        assert!(DownloadError::Status(404).is_permanent());
        assert!(!DownloadError::Status(429).is_permanent());
        assert!(!DownloadError::Status(503).is_permanent());
        assert!(DownloadError::TooLarge { limit: 1 }.is_permanent());
        assert!(!DownloadError::Timeout(Duration::from_secs(1)).is_permanent());
    }
}
