//! NATS credentials at the CLI: a password in `--nats URL` is printed as `user:***` in every
//! message and log line; a refused password exits 3; a password file works.

use crate::support::*;
use azlin_testkit::{NatsServer, ServerOptions};
use std::net::{Ipv4Addr, TcpListener};

fn unused_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_password_in_the_url_is_never_printed() {
    let azlin = Azlin::new();
    let url = format!("nats://alice:s3cret-pw@127.0.0.1:{}", unused_port());
    for args in [
        vec!["list", "-vv"],
        vec!["events", "-vv"],
        vec!["worker", "-vv"],
        vec!["serve", "-vv"],
        vec!["doctor", "-vv"],
    ] {
        let mut args: Vec<&str> = args;
        args.extend(["--nats", url.as_str()]);
        let run = azlin.run(&args);
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(
            !all.contains("s3cret-pw"),
            "{args:?} printed the password: {all}"
        );
        if args[0] != "doctor" {
            assert_ne!(run.code, 0, "{args:?}: {all}");
            assert!(all.contains("alice:***@127.0.0.1"), "{args:?}: {all}");
        }
    }
    // The same URL from the environment.
    let run = azlin.run_env(&["list", "-vv"], &[("AZLIN_NATS_URL", url.as_str())]);
    assert!(!format!("{}{}", run.stdout, run.stderr).contains("s3cret-pw"));
}

#[test]
fn a_refused_password_exits_3_and_a_password_file_works() {
    let server = NatsServer::start_options(ServerOptions::with_azlin_users("")).unwrap();
    let azlin = Azlin::new();
    let wrong = format!("nats://azlin-cli:wrong-pw@127.0.0.1:{}", server.port());
    let run = azlin.run(&["list", "-vv", "--nats", &wrong]);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert_eq!(run.code, 3, "{all}");
    assert!(all.contains("refused these credentials"), "{all}");
    assert!(!all.contains("wrong-pw"), "{all}");

    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("cli.password");
    std::fs::write(&password, "cli-pw\n").unwrap();
    let run = azlin.run(&[
        "list",
        "--nats",
        &server.url(),
        "--nats-user",
        "azlin-cli",
        "--nats-password-file",
        password.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    // Flags without a server are refused rather than ignored.
    let run = azlin.run(&["list", "--nats-user", "azlin-cli"]);
    assert_eq!(run.code, 64, "{}", run.stderr);
}
