//! Snapshots and clones of real nspawn VMs: a file written before a snapshot is back after the
//! restore and one written after is gone; a clone is a new machine (its own host key, machine
//! id and host name) that answers SSH with its own key.

use crate::support::{Azlin, nspawn_processes};

#[test]
fn an_nspawn_snapshot_round_trips_and_a_clone_is_a_new_machine() {
    let azlin = Azlin::new();
    azlin.new_vm("nspawn", "snapped", &[]).expect(0);
    azlin.sh("snapped", "echo kept > ~/before && sync");
    let taken = azlin
        .run(&["snapshot", "create", "snapped", "s1", "-o", "json"])
        .expect(0)
        .json();
    assert_eq!(taken[0]["name"], "s1");
    // The VM went on running through the snapshot (paused, not rebooted).
    assert_eq!(azlin.sh("snapped", "cat ~/before"), "kept");
    azlin.sh("snapped", "echo lost > ~/after && sync");
    let again = azlin
        .run(&["snapshot", "create", "snapped", "s1"])
        .expect(64);
    assert!(
        again.stderr.contains("already has a snapshot 's1'"),
        "{}",
        again.stderr
    );
    let bad = azlin
        .run(&["snapshot", "restore", "snapped", "../x"])
        .expect(64);
    assert!(bad.stderr.contains("snapshot name"), "{}", bad.stderr);
    let missing = azlin
        .run(&["snapshot", "restore", "snapped", "nope"])
        .expect(64);
    assert!(
        missing.stderr.contains("no snapshot 'nope'"),
        "{}",
        missing.stderr
    );

    azlin
        .run(&["snapshot", "restore", "snapped", "s1"])
        .expect(0);
    // Restored in place: same host key (strict SSH still works), the file from before is
    // there, the one from after is gone.
    assert_eq!(
        azlin.sh(
            "snapped",
            "cat ~/before; test -e ~/after && echo after-survived || echo after-gone"
        ),
        "kept\nafter-gone"
    );

    let source = azlin.vm("snapped");
    let cloned = azlin
        .run(&["clone", "snapped", "copy", "-o", "json"])
        .expect(0)
        .json();
    assert_eq!(cloned["clones"][0]["name"], "copy");
    let copy = azlin.vm("copy");
    assert_ne!(
        copy["host_key"], source["host_key"],
        "a clone has its own host key"
    );
    assert_ne!(copy["address"], source["address"]);
    // The clone answers SSH with its own key (azlin connect checks it strictly), carries the
    // source's files, and has its own machine id and host name.
    assert_eq!(azlin.sh("copy", "cat ~/before"), "kept");
    assert_eq!(azlin.sh("copy", "hostname"), "copy");
    assert_ne!(
        azlin.sh("copy", "cat /etc/machine-id"),
        azlin.sh("snapped", "cat /etc/machine-id")
    );
    // The clone's snapshot was temporary; s1 remains until deleted.
    let listed = azlin
        .run(&["snapshot", "list", "snapped", "-o", "json"])
        .expect(0)
        .json();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["s1"]);
    azlin
        .run(&["snapshot", "delete", "snapped", "s1"])
        .expect(0);
    assert_eq!(
        azlin
            .run(&["snapshot", "list", "-o", "json"])
            .expect(0)
            .json(),
        serde_json::json!([])
    );

    for vm in ["copy", "snapped"] {
        azlin.run(&["delete", vm, "--yes"]).expect(0);
    }
    azlin.assert_no_vms();
    assert!(nspawn_processes(&azlin.home.path().display().to_string()).is_empty());
}
