//! `--size` on nspawn: the VM's CPU time, memory and processes are limited through its cgroups,
//! as the size says, and a process that outgrows the memory is killed inside the VM only.

use crate::support::Azlin;

#[test]
fn an_nspawn_vm_is_held_to_its_size() {
    let azlin = Azlin::new();
    // Standard_B1s: 1 vCPU, 1 GiB.
    azlin
        .new_vm("nspawn", "small", &["--size", "Standard_B1s"])
        .expect(0);
    let limits = azlin.sh(
        "small",
        "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null; \
         cat /sys/fs/cgroup/cpu.max /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null; true",
    );
    let lines: Vec<&str> = limits.lines().collect();
    assert_eq!(lines.first(), Some(&"1073741824"), "{limits}");
    assert!(
        lines.get(1).is_some_and(|l| l.starts_with("100000")),
        "{limits}"
    );
    // A line of 1.5 GiB held in memory does not fit: the kernel kills that process, the VM
    // goes on.
    let hog = azlin.sh(
        "small",
        "head -c 1536M /dev/zero | tail -n 1 > /dev/null; echo status=$?",
    );
    assert!(!hog.contains("status=0"), "{hog}");
    azlin.run(&["connect", "small", "--", "true"]).expect(0);
    azlin.run(&["delete", "small", "--yes"]).expect(0);
    azlin.assert_no_vms();
}
