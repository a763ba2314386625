//! The local-new end to end through the bus: `azlin new --provider nspawn --nats URL` with the
//! worker in another process (and another home), giving a VM that answers SSH from the
//! requester's side, deleted through the bus.

use crate::support::*;
use azlin_testkit::NatsServer;
use std::time::Duration;

#[test]
fn nspawn_vm_made_by_a_worker_in_another_process_is_reachable() {
    let nats = NatsServer::start().unwrap();
    let url = nats.url();
    let image_dir =
        std::env::var("AZLIN_IMAGE_DIR").unwrap_or_else(|_| "/var/cache/azlin/images".into());
    let worker_home = Azlin::new().env("AZLIN_IMAGE_DIR", &image_dir);
    let _worker = worker_home.worker(&url, &[]);
    let user = Azlin::new().env("AZLIN_IMAGE_DIR", &image_dir);

    let run = user
        .spawn(&new_args(
            "nspawn",
            "natsvm",
            &["--nats", &url, "-o", "json"],
        ))
        .wait(Duration::from_secs(300))
        .expect(0);
    let created = run.json();
    assert_eq!(created["vms"][0]["name"], "natsvm", "{created}");
    // The VM lives with the worker, not with the requester.
    assert!(worker_home.state_dir().join("nspawn/natsvm").is_dir());
    assert!(!user.state_dir().join("nspawn/natsvm").exists());

    // The requester reaches it over SSH with its own key, checking the injected host key.
    let run = user
        .run(&[
            "connect",
            "natsvm",
            "--nats",
            &url,
            "--",
            "sh",
            "-c",
            "hostname; cloud-init status",
        ])
        .expect(0);
    assert!(run.stdout.starts_with("natsvm\n"), "{}", run.stdout);
    assert!(run.stdout.contains("status: done"), "{}", run.stdout);
    let listed = user
        .run(&["list", "--nats", &url, "-o", "json"])
        .expect(0)
        .json();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "natsvm"),
        "{listed}"
    );

    // Deleted through the bus by the worker that has it.
    user.run(&["delete", "natsvm", "--yes", "--nats", &url])
        .expect(0);
    assert!(!worker_home.state_dir().join("nspawn/natsvm").exists());
    let listed = user
        .run(&["list", "--nats", &url, "-o", "json"])
        .expect(0)
        .json();
    assert!(
        !listed
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "natsvm"),
        "{listed}"
    );
}
