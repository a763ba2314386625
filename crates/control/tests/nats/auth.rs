//! A server with TLS (mutual, certificates made by the test) and azlin's users and subject
//! permissions from `docs/nats/azlin-users.conf`: a permitted client launches over TLS, a worker
//! cannot submit requests, and a wrong password is refused as an authentication error.

use crate::support::*;
use azlin_control::BusError;
use azlin_control::bus::nats::{NatsBus, NatsSettings};
use azlin_core::event::Event;
use azlin_core::nats::{NatsConfig, NatsConnection, NatsInputs, NatsUrl};
use azlin_testkit::{NatsServer, ServerOptions, TestPki};
use std::sync::Arc;
use std::time::Duration;

struct Secured {
    server: NatsServer,
    pki: TestPki,
    _certs: tempfile::TempDir,
}

fn secured_server() -> Secured {
    let certs = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::write(certs.path()).expect("certificates");
    let server =
        NatsServer::start_options(ServerOptions::with_azlin_users(&pki.nats_tls_block(true)))
            .expect("nats-server with TLS and users");
    Secured {
        server,
        pki,
        _certs: certs,
    }
}

/// A connection as `user` with `password` (in the URL), over mutual TLS.
fn connection(secured: &Secured, user: &str, password: &str) -> NatsConnection {
    NatsConnection::resolve(NatsInputs {
        url: NatsUrl::new(format!(
            "tls://{user}:{password}@127.0.0.1:{}",
            secured.server.port()
        )),
        config: NatsConfig {
            ca_file: Some(secured.pki.ca.clone()),
            cert_file: Some(secured.pki.client_cert.clone()),
            key_file: Some(secured.pki.client_key.clone()),
            ..NatsConfig::default()
        },
        token: None,
    })
    .expect("connection settings")
}

async fn connect(
    secured: &Secured,
    user: &str,
    password: &str,
    settings: NatsSettings,
) -> Result<NatsBus, BusError> {
    NatsBus::connect_with(&connection(secured, user, password), settings).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permitted_users_launch_over_tls() {
    let secured = secured_server();
    let home = Home::new();
    let cli = Arc::new(
        connect(&secured, "azlin-cli", "cli-pw", settings())
            .await
            .expect("the CLI user connects over TLS"),
    );
    let worker_bus = Arc::new(
        connect(&secured, "azlin-worker", "worker-pw", settings())
            .await
            .expect("the worker connects over TLS"),
    );
    let worker = start_worker(worker_bus, &home, sim(50, 0.0), "tls-worker", 2, 3);
    let mut subscription = azlin_control::Bus::subscribe(cli.as_ref())
        .await
        .expect("subscribe");
    let requests = submit_fleet(&cli, &home, "secure", 2).await;
    let seen =
        collect_until_ended(&mut subscription, ids(&requests), Duration::from_secs(60)).await;
    assert_one_complete_each(&seen, &requests);
    assert_eq!(home.sim_vms(), ["secure-1", "secure-2"]);
    // `azlin serve`'s user may read the audit trail too.
    let serve = connect(&secured, "azlin-serve", "serve-pw", settings())
        .await
        .expect("serve connects");
    assert_one_complete_each(&audit_trail(&serve).await, &requests);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cannot_submit_requests() {
    let secured = secured_server();
    let home = Home::new();
    let quick = NatsSettings {
        publish_timeout: Duration::from_secs(3),
        ..settings()
    };
    let worker_bus = connect(&secured, "azlin-worker", "worker-pw", quick)
        .await
        .expect("the worker connects");
    let request = create("forged", &home.identity);
    let err = azlin_control::Bus::submit(&worker_bus, &request)
        .await
        .expect_err("a worker may not publish vm.create.request");
    assert!(matches!(err, BusError::Transport(_)), "{err}");
    // Nothing reached the request stream, and the server says why.
    let cli = connect(&secured, "azlin-cli", "cli-pw", settings())
        .await
        .expect("the CLI user connects");
    let mut stream = cli
        .jetstream()
        .get_stream("AZLIN_REQUESTS")
        .await
        .expect("the request stream");
    let info = stream.info().await.expect("stream info");
    assert_eq!(info.state.messages, 0, "{:?}", info.state);
    let log = std::fs::read_to_string(secured.server.log_file()).expect("server log");
    assert!(
        log.lines().any(|line| line.contains("user:azlin-worker")
            && line.contains("Publish Violation - Subject \"vm.create.request\"")),
        "server log: {log}"
    );
    let trail = audit_trail(&cli).await;
    let about_it: Vec<&Event> = trail
        .iter()
        .filter(|e| e.request_id() == request.request_id())
        .collect();
    assert!(about_it.is_empty(), "{about_it:?}");
    assert!(home.sim_vms().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_an_authentication_error() {
    let secured = secured_server();
    let err = connect(&secured, "azlin-cli", "not-the-password", settings())
        .await
        .expect_err("a wrong password is refused");
    let message = err.to_string();
    assert!(matches!(err, BusError::Auth(_)), "{message}");
    assert!(message.contains("refused these credentials"), "{message}");
    assert!(!message.contains("not-the-password"), "{message}");
    assert!(message.contains("azlin-cli:***@127.0.0.1"), "{message}");
    // Without the client certificate the server (verify: true) refuses the TLS handshake.
    let mut no_cert = connection(&secured, "azlin-cli", "cli-pw");
    no_cert.tls.client = None;
    let err = NatsBus::connect_with(&no_cert, settings())
        .await
        .expect_err("no client certificate");
    assert!(!err.to_string().contains("cli-pw"), "{err}");
}
