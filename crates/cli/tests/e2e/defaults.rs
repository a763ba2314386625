//! The config file's defaults and step 7's notification, on the fast `sim` provider: what a
//! user who writes `~/.config/azlin/config.toml` (or passes `--config`) expects to happen.

use crate::support::Azlin;

/// A notify command that records what azlin told it.
fn recording_notifier(azlin: &Azlin) -> (String, std::path::PathBuf) {
    let log = azlin.home.path().join("notified");
    let command = format!(
        "notify_command = 'echo \"$AZLIN_NOTIFY_STATUS $AZLIN_NOTIFY_VM\" >> {}'\n",
        log.display()
    );
    (command, log)
}

#[test]
fn config_defaults_choose_the_provider_and_the_notifier_hears_the_outcome() {
    let azlin = Azlin::new();
    let (notify, log) = recording_notifier(&azlin);
    azlin.config(&format!("provider = \"sim\"\nsize = \"m\"\n{notify}"));
    let run = azlin
        .run(&["new", "--name", "plain", "--no-connect"])
        .expect(0);
    assert!(run.stderr.contains("Notification sent"), "{}", run.stderr);
    let vm = azlin.vm("plain");
    assert_eq!(vm["provider"], "sim", "{vm}");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "success plain\n");
    azlin.run(&["delete", "plain", "--yes"]).expect(0);
    azlin.assert_no_vms();
}

#[test]
fn a_failed_launch_is_notified_as_a_failure() {
    let azlin = Azlin::new();
    let (notify, log) = recording_notifier(&azlin);
    azlin.config(&format!(
        "provider = \"sim\"\n{notify}[sim]\nfail_rate = 1.0\n"
    ));
    azlin
        .run(&["new", "--name", "doomed", "--no-connect"])
        .expect(4);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "failure doomed\n");
    azlin.assert_no_vms();
}

#[test]
fn a_failing_notifier_is_a_warning_not_a_failure() {
    let azlin = Azlin::new();
    azlin.config("provider = \"sim\"\nnotify_command = 'exit 3'\n");
    let run = azlin
        .run(&["new", "--name", "loud", "--no-connect"])
        .expect(0);
    assert!(
        run.stderr.contains("⚠ Notification command failed"),
        "{}",
        run.stderr
    );
    azlin.run(&["delete", "loud", "--yes"]).expect(0);
}

#[test]
fn an_explicit_config_file_wins_over_the_default_one() {
    let azlin = Azlin::new();
    azlin.config("provider = \"nspawn\"\n");
    let other = azlin.home.path().join("other.toml");
    std::fs::write(&other, "provider = \"sim\"\n").unwrap();
    let config = other.to_str().unwrap();
    azlin
        .run(&[
            "--config",
            config,
            "new",
            "--name",
            "elsewhere",
            "--no-connect",
        ])
        .expect(0);
    let listed = azlin
        .run(&["--config", config, "list", "-o", "json"])
        .expect(0)
        .json();
    assert_eq!(listed[0]["provider"], "sim", "{listed}");
    azlin
        .run(&["--config", config, "delete", "elsewhere", "--yes"])
        .expect(0);
}
