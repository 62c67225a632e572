//! TLS: `rediss://` through redis-rs's rustls support, and a redis-rs client
//! configured by the caller (a private CA) handed to the builder. Runs where
//! the server is built with TLS (Debian's Redis 7.0; the Valkey wheels are
//! not), and says so where it is not.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use redis_inventory_client::{Client, Error, Outcome, RetryPolicy};
use std::path::Path;
use std::time::Duration;
use testkit::Server;

/// A CA and a certificate for 127.0.0.1 signed by it, as PEM files in
/// `dir`; returns the CA's PEM.
fn certificates(dir: &Path) -> Vec<u8> {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "redis-inventory test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    ca.pem().into_bytes()
}

#[tokio::test]
async fn rediss_with_the_callers_ca_and_refused_without_it() {
    let certs = tempfile::tempdir().unwrap();
    let ca_pem = certificates(certs.path());
    let path = |f: &str| certs.path().join(f).display().to_string();
    let tls_port = testkit::free_port().to_string();
    let (cert, key, ca) = (path("server.pem"), path("server.key"), path("ca.pem"));
    let server = match Server::try_start(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
    ]) {
        Ok(server) => server,
        Err(log) if log.contains("TLS support") => {
            testkit::skip("the server is built without TLS");
            return;
        }
        Err(log) => panic!("{log}"),
    };
    let url = format!("rediss://127.0.0.1:{tls_port}/");

    // The system's roots do not know this CA: the handshake is refused, at
    // once and typed, not retried until the deadline.
    let refused = Client::builder()
        .retry(RetryPolicy {
            deadline: Duration::from_secs(3),
            ..Default::default()
        })
        .standalone(&url)
        .await;
    match refused {
        Err(Error::Tls(e)) => assert!(e.to_string().to_lowercase().contains("certificate"), "{e}"),
        Err(e) => panic!("expected a TLS error, got {e:?}"),
        Ok(_) => panic!("a certificate from an unknown CA was accepted"),
    }

    // With the CA given through redis-rs's own TLS options.
    let tls = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(ca_pem),
    };
    let redis = redis::Client::build_with_tls(url.as_str(), tls).unwrap();
    let client = Client::builder().standalone_from(redis).await.unwrap();
    client.set("sku:tls", 5, None).await.unwrap();
    let r = client
        .reserve("sku:tls", "o1", 2, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!((r.outcome, r.available), (Outcome::Reserved, 3));
    // The plain port sees the same server.
    let mut plain = server.conn();
    let reserved: Vec<redis::Value> = redis::cmd("INV.GET")
        .arg("sku:tls")
        .query(&mut plain)
        .unwrap();
    assert!(format!("{reserved:?}").contains("reserved"));
}
