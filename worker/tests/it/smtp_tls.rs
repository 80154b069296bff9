//! SMTP over TLS, spoken: the SMTP sink with a certificate from a private CA made here
//! (rcgen), served with rustls on aws-lc-rs (the TLS stack lettre uses in this workspace), and
//! the notifier delivering over `STARTTLS` (`smtp://…?tls=required`, and opportunistically
//! with plain `smtp://`) and implicit TLS (`smtps://`), trusting that CA through
//! [`SmtpMailer::with_extra_roots`]. A certificate from another CA and a server that offers no
//! `STARTTLS` under `tls=required` get no mail. `SMTP_CA_FILE` (`MailConfig::smtp_ca_file`)
//! is the operator's way to the same trust.

use std::sync::Arc;
use std::time::Duration;

use contracts::jobs::{NotifyJob, NotifyStatus};
use job_queue::{Envelope, JobId};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use secrecy::SecretString;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use uuid::Uuid;
use worker::notifier::SmtpMailer;
use worker::runner::JobHandler;
use worker::{JobError, Notifier};

use crate::helpers::{TempDir, TestQueue};
use crate::notifier::notifier_config;
use test_support::smtp::{Connection, Handshake, SinkTls, SmtpSink};

/// A private CA and a server certificate it signed for `127.0.0.1` and `localhost`.
pub struct TestCa {
    /// The CA certificate, PEM: what a notifier must trust.
    pub pem: String,
    server: Arc<ServerConfig>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, name);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate().unwrap();
        let mut server =
            CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        server
            .distinguished_name
            .push(DnType::CommonName, "sink.test");
        let server_cert = server.signed_by(&server_key, &issuer).unwrap();

        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![server_cert.der().clone(), ca_cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
            )
            .unwrap();
        TestCa {
            pem: ca_cert.pem(),
            server: Arc::new(config),
        }
    }

    /// The sink's side of the TLS handshake, with the server certificate.
    pub fn handshake(&self) -> Handshake {
        let acceptor = TlsAcceptor::from(self.server.clone());
        Arc::new(move |connection: Box<dyn Connection>| {
            let acceptor = acceptor.clone();
            Box::pin(async move {
                let secured = acceptor.accept(connection).await?;
                Ok(Box::new(secured) as Box<dyn Connection>)
            })
        })
    }
}

fn envelope(job: &NotifyJob) -> Envelope {
    let new = job.to_job().unwrap();
    Envelope::new(new.id.unwrap_or_else(JobId::random), new.kind, new.payload)
}

fn notice() -> NotifyJob {
    NotifyJob {
        transcription_id: Uuid::new_v4(),
        email: "listener@example.com".into(),
        transcript: "Sent over TLS.".into(),
        status: NotifyStatus::Completed,
    }
}

/// Sends one notice to `url` through a notifier trusting `ca` (PEM).
async fn send(url: &str, ca: &str) -> Result<(), JobError> {
    let dir = TempDir::new("smtp-tls");
    let queue = TestQueue::sqlite().await;
    let mailer = SmtpMailer::with_extra_roots(
        &SecretString::from(url.to_owned()),
        Duration::from_secs(10),
        queue.queue.clone(),
        ca.as_bytes(),
    )
    .unwrap();
    let notifier = Notifier::with_mailer(
        notifier_config(None, &dir),
        queue.queue.clone(),
        Arc::new(mailer),
    )
    .unwrap();
    notifier.handler().handle(&envelope(&notice())).await
}

fn assert_one_mail_over_tls(sink: &SmtpSink) {
    let mail = sink.received();
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert!(mail[0].tls, "the message came in the clear");
    assert_eq!(mail[0].recipients, ["listener@example.com"]);
    assert_eq!(
        mail[0].header("Subject").unwrap(),
        "Your transcription is ready"
    );
    assert!(mail[0].body().contains("Sent over TLS."));
}

#[tokio::test]
async fn the_notifier_delivers_over_starttls_when_tls_is_required() {
    let ca = TestCa::new("worker tests CA");
    let sink = SmtpSink::start_with(SinkTls::StartTls(ca.handshake())).await;

    send(&format!("{}?tls=required", sink.url()), &ca.pem)
        .await
        .unwrap();

    assert_one_mail_over_tls(&sink);
}

#[tokio::test]
async fn the_notifier_upgrades_plain_smtp_urls_when_the_server_offers_starttls() {
    let ca = TestCa::new("worker tests CA");
    let sink = SmtpSink::start_with(SinkTls::StartTls(ca.handshake())).await;

    send(&sink.url(), &ca.pem).await.unwrap();

    assert_one_mail_over_tls(&sink);
}

#[tokio::test]
async fn the_notifier_delivers_over_implicit_tls_with_smtps() {
    let ca = TestCa::new("worker tests CA");
    let sink = SmtpSink::start_with(SinkTls::Implicit(ca.handshake())).await;
    assert!(sink.url().starts_with("smtps://"));

    send(&sink.url(), &ca.pem).await.unwrap();

    assert_one_mail_over_tls(&sink);
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_gets_no_mail() {
    let server_ca = TestCa::new("the sink's CA");
    let trusted = TestCa::new("another CA");
    let starttls = SmtpSink::start_with(SinkTls::StartTls(server_ca.handshake())).await;
    let implicit = SmtpSink::start_with(SinkTls::Implicit(server_ca.handshake())).await;

    for url in [format!("{}?tls=required", starttls.url()), implicit.url()] {
        let error = send(&url, &trusted.pem).await.unwrap_err();
        assert!(
            matches!(&error, JobError::Transient(text) if text.contains("invalid peer certificate: UnknownIssuer")),
            "{url}: {error:?}"
        );
    }

    assert!(starttls.received().is_empty());
    assert!(implicit.received().is_empty());
}

#[tokio::test]
async fn required_tls_sends_nothing_to_a_server_without_starttls() {
    let ca = TestCa::new("worker tests CA");
    let plain = SmtpSink::start().await;

    let error = send(&format!("{}?tls=required", plain.url()), &ca.pem)
        .await
        .unwrap_err();

    assert!(
        matches!(&error, JobError::Transient(text) if text.contains("STARTTLS is not supported")),
        "{error:?}"
    );
    assert!(plain.received().is_empty(), "sent in the clear");
}

#[tokio::test]
async fn the_smtp_ca_file_is_trusted_by_a_notifier_built_from_its_config() {
    let ca = TestCa::new("internal relay CA");
    let sink = SmtpSink::start_with(SinkTls::StartTls(ca.handshake())).await;
    let dir = TempDir::new("ca-file");
    let ca_file = dir.path().join("internal-ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let queue = TestQueue::sqlite().await;
    let mut config = notifier_config(Some(format!("{}?tls=required", sink.url())), &dir);
    config.mail.smtp_ca_file = Some(ca_file);
    let notifier = Notifier::new(config, queue.queue.clone()).unwrap();

    notifier
        .handler()
        .handle(&envelope(&notice()))
        .await
        .unwrap();

    assert_one_mail_over_tls(&sink);
}

#[tokio::test]
async fn an_smtp_ca_file_without_a_certificate_stops_the_notifier_at_start() {
    let dir = TempDir::new("ca-file-bad");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let queue = TestQueue::sqlite().await;
    for path in [empty, dir.path().join("missing.pem")] {
        let mut config = notifier_config(Some("smtp://127.0.0.1:25?tls=required".into()), &dir);
        config.mail.smtp_ca_file = Some(path.clone());
        let Err(error) = Notifier::new(config, queue.queue.clone()) else {
            panic!("{} accepted", path.display());
        };
        assert!(error.to_string().contains("SMTP_CA_FILE"), "{error}");
    }
}

#[tokio::test]
async fn extra_roots_without_a_certificate_are_refused() {
    let queue = TestQueue::sqlite().await;
    for pem in [&b""[..], b"not a certificate"] {
        let result = SmtpMailer::with_extra_roots(
            &SecretString::from("smtp://127.0.0.1:25?tls=required".to_owned()),
            Duration::from_secs(10),
            queue.queue.clone(),
            pem,
        );
        assert!(result.is_err(), "{pem:?}");
    }
}
