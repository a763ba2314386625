//! Checks of the requests azlin sent to the [`ArmDouble`](super::ArmDouble), shared by the
//! `azure` provider's tests and the CLI's end-to-end tests.
//!
//! They know azlin's naming of the resources it makes for a VM `vm` in region `region`:
//! `{vm}-nsg`, `{vm}-ip`, `{vm}-nic`, the VM `vm` with its OS disk `{vm}-osdisk`, and the shared VNet `azlin-vnet-{region}` with
//! its subnet `azlin-subnet`. Every check panics with the request log or the body it looked at.

use super::RecordedRequest;
use serde_json::Value;

/// The one request matching `method` whose path ends with `suffix` (compared as ARM does);
/// panics unless there is exactly one.
pub fn the_request<'a>(
    requests: &'a [RecordedRequest],
    method: &str,
    suffix: &str,
) -> &'a RecordedRequest {
    let found: Vec<_> = requests
        .iter()
        .filter(|r| r.method == method && r.path_ends_with(suffix))
        .collect();
    assert_eq!(found.len(), 1, "{method} …{suffix}: {found:#?}");
    found[0]
}

/// The JSON body of the one `PUT` whose path ends with `suffix` (see [`the_request`]).
pub fn put_body<'a>(requests: &'a [RecordedRequest], suffix: &str) -> &'a Value {
    the_request(requests, "PUT", suffix).json()
}

/// Asserts that every request succeeded but for existence checks: a `GET` answered `404`.
pub fn assert_only_existence_checks_failed(requests: &[RecordedRequest]) {
    for r in requests {
        assert!(
            r.status < 400 || (r.method == "GET" && r.status == 404),
            "{r:?} in {requests:#?}"
        );
    }
}

/// Asserts that the `PUT` of VM `vm`'s network interface wires it to the subnet of the shared
/// VNet of `region`, to the VM's public IP and to its network security group.
pub fn assert_nic_wiring(requests: &[RecordedRequest], vm: &str, region: &str) {
    let nic = put_body(requests, &format!("/networkInterfaces/{vm}-nic"));
    let ipconfig = &nic["properties"]["ipConfigurations"][0]["properties"];
    let wired = [
        (
            &ipconfig["subnet"]["id"],
            format!("/virtualNetworks/azlin-vnet-{region}/subnets/azlin-subnet"),
        ),
        (
            &ipconfig["publicIPAddress"]["id"],
            format!("/publicIPAddresses/{vm}-ip"),
        ),
        (
            &nic["properties"]["networkSecurityGroup"]["id"],
            format!("/networkSecurityGroups/{vm}-nsg"),
        ),
    ];
    for (id, suffix) in wired {
        assert!(
            id.as_str().is_some_and(|id| id.ends_with(&suffix)),
            "the NIC of {vm} names …{suffix}: {nic:#}"
        );
    }
}

/// Asserts that the `PUT` of each resource azlin makes for VM `vm` alone (its network security
/// group, public IP, network interface and the VM itself), and the `PATCH` that tags the VM's OS
/// disk `{vm}-osdisk` once the VM made it, carry every tag of `tags`.
pub fn assert_tags_on_vm_resources(requests: &[RecordedRequest], vm: &str, tags: &[(&str, &str)]) {
    let puts = [
        format!("/networkSecurityGroups/{vm}-nsg"),
        format!("/publicIPAddresses/{vm}-ip"),
        format!("/networkInterfaces/{vm}-nic"),
        format!("/virtualMachines/{vm}"),
    ]
    .map(|suffix| (put_body(requests, &suffix), suffix));
    let disk = format!("/disks/{vm}-osdisk");
    let patch = (the_request(requests, "PATCH", &disk).json(), disk);
    for (body, suffix) in puts.iter().chain([&patch]) {
        for (key, value) in tags {
            assert_eq!(body["tags"][*key], *value, "tag {key} of …{suffix}");
        }
    }
}
