//! The `azure` provider against the ARM test double (`azlin_testkit::ArmDouble`) on loopback,
//! with a stub `az` first on the PATH the provider is given.
//!
//! Every test runs on a current-thread runtime, and one global `tracing` subscriber captures
//! everything logged in this test binary at trace level, so that the tests can check that no
//! token is ever logged.

use azlin_core::{
    CreateRequest, ErrorKind, ImageProfile, ProviderError, ProviderKind, VmName, VmProvider,
    VmSpec, VmState,
};
use azlin_providers::azure::{AzureProvider, AzureSettings, MAX_CUSTOM_DATA_BYTES};
use azlin_testkit::arm_double::checks::{
    assert_nic_wiring, assert_only_existence_checks_failed, assert_tags_on_vm_resources, put_body,
    the_request,
};
use azlin_testkit::{ArmDouble, AzAccount, Fault, StubAz};
use base64::Engine;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Harness

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything logged by any test of this binary so far.
fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("the capturing subscriber is the first one");
        captured
    })
}

fn log_text() -> String {
    String::from_utf8_lossy(&logs().0.lock().expect("log buffer")).into_owned()
}

fn settings_for(double: &ArmDouble, az: &StubAz) -> AzureSettings {
    AzureSettings {
        endpoint: double.endpoint().to_string(),
        search_path: Some(az.path_first(std::env::var_os("PATH").as_deref())),
        ..AzureSettings::default()
    }
}

/// A fresh ARM double, and the provider pointed at it with a logged-in stub `az` first on its
/// `PATH`. The stub lives in a temporary folder removed when it drops: bind it for the whole test
/// (`_az`, not `_`).
type Env = (ArmDouble, AzureProvider, StubAz);

async fn env() -> Env {
    env_with(|_| {}, |_| {}).await
}

/// [`env`] with the account `az` reports changed by `account`.
async fn env_with_account(account: impl FnOnce(&mut AzAccount)) -> Env {
    env_with(account, |_| {}).await
}

/// [`env`] with the provider's settings changed by `settings`.
async fn env_with_settings(settings: impl FnOnce(&mut AzureSettings)) -> Env {
    env_with(|_| {}, settings).await
}

async fn env_with(
    account: impl FnOnce(&mut AzAccount),
    settings: impl FnOnce(&mut AzureSettings),
) -> Env {
    let double = start_double().await;
    let mut acct = AzAccount::for_double(&double);
    account(&mut acct);
    let az = StubAz::logged_in(&acct).expect("stub az written");
    let mut s = settings_for(&double, &az);
    settings(&mut s);
    let provider = AzureProvider::new(s).expect("valid settings");
    (double, provider, az)
}

/// A fresh ARM double, with the log capture installed.
async fn start_double() -> ArmDouble {
    logs();
    ArmDouble::start().await.expect("ARM double starts")
}

const ADMIN_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAdminKeyAdminKeyAdminKeyAdminKey1234 azlin";
const HOST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyHostKeyHostKeyHostKeyHost5678 root@vm";

fn request(name: &str, id: &str) -> CreateRequest {
    CreateRequest {
        request_id: id.to_string(),
        spec: VmSpec {
            name: VmName::parse(name).expect("valid VM name"),
            provider: ProviderKind::Azure,
            size: "s".into(),
            region: "westus2".into(),
            resource_group: "azlin-test".into(),
            image: ImageProfile::Minimal,
            repos: vec![],
            cloud_init: None,
            ca_certs: vec![],
            tags: BTreeMap::from([("team".to_string(), "platform".to_string())]),
            clone_of: None,
        },
        user_data: format!(
            "#cloud-config\nhostname: {name}\nssh_keys:\n  ed25519_private: |\n    -----BEGIN OPENSSH PRIVATE KEY-----\n    b3BlbnNzaC1rZXktdjEAAAAA\n    -----END OPENSSH PRIVATE KEY-----\n"
        ),
        admin_public_key: ADMIN_KEY.into(),
        host_public_key: HOST_KEY.into(),
    }
}

fn name(n: &str) -> VmName {
    VmName::parse(n).expect("valid VM name")
}

/// Asserts the double holds no resource (resource groups aside): none azlin made, no disk
/// Azure made for azlin's VMs, nor anything else.
fn assert_no_resources(double: &ArmDouble) {
    assert_eq!(double.azlin_resources(), Vec::<String>::new());
    assert!(double.resources().is_empty(), "{:#?}", double.resources());
}

/// Asserts `err` is of `kind` and its message names every one of `mentions`.
fn assert_fails(err: &ProviderError, kind: ErrorKind, mentions: &[&str]) {
    assert_eq!(err.kind, kind, "{}", err.message);
    for mention in mentions {
        assert!(err.message.contains(mention), "{mention}: {}", err.message);
    }
}

/// Asserts the cleanup after `err` removed every one of `removed` (as the provider names them).
fn assert_cleaned_up(err: &ProviderError, removed: &[&str]) {
    for made in removed {
        assert!(
            err.cleaned_up.iter().any(|c| c == made),
            "{made} in {:?}",
            err.cleaned_up
        );
    }
}

/// How many times `az` was run with arguments starting with `command`.
fn az_calls(az: &StubAz, command: &str) -> usize {
    az.calls().iter().filter(|c| c.starts_with(command)).count()
}

// ---------------------------------------------------------------------------------------------
// Lifecycle

#[tokio::test]
async fn create_get_list_stop_start_delete_against_the_arm_double() {
    let (double, provider, az) = env().await;
    let who = provider.authenticate().await.unwrap();
    assert!(who.contains(double.subscription_id()), "{who}");
    assert!(who.contains("developer@contoso.example"), "{who}");
    assert_eq!(
        double.request_count(),
        0,
        "authenticating needs no ARM call"
    );

    let req = request("dev1", "req-1");
    let vm = provider.create(&req).await.unwrap();
    assert_eq!(vm.name.as_str(), "dev1");
    assert_eq!(vm.provider, ProviderKind::Azure);
    assert_eq!(vm.state, VmState::Running);
    assert_eq!(vm.ssh_port, 22);
    assert_eq!(vm.user, "azureuser");
    assert_eq!(vm.host_key, HOST_KEY);
    assert_eq!(vm.request_id, "req-1");
    assert_eq!(vm.details["resource_group"], "azlin-test");
    assert!(
        vm.details["vm_id"].ends_with(
            "/resourceGroups/azlin-test/providers/Microsoft.Compute/virtualMachines/dev1"
        )
    );
    assert!(vm.details["nic_id"].ends_with("/networkInterfaces/dev1-nic"));

    let requests = double.requests();
    // Every request names the api-version of its resource provider.
    for r in &requests {
        let version = r.query.get("api-version").map(String::as_str);
        let path = r.path.to_ascii_lowercase();
        let want = if path.contains("microsoft.compute/disks") {
            "2025-01-02"
        } else if path.contains("microsoft.compute") {
            "2025-04-01"
        } else if path.contains("microsoft.network") {
            "2025-05-01"
        } else {
            "2024-07-01"
        };
        assert_eq!(version, Some(want), "{r:?}");
    }
    assert_only_existence_checks_failed(&requests);

    let group = put_body(&requests, "/resourceGroups/azlin-test");
    assert_eq!(group["location"], "westus2");
    assert_eq!(group["tags"]["azlin-managed"], "true");

    let nsg = put_body(&requests, "/networkSecurityGroups/dev1-nsg");
    assert_eq!(nsg["location"], "westus2");
    let rule = &nsg["properties"]["securityRules"][0]["properties"];
    assert_eq!(rule["destinationPortRange"], "22");
    assert_eq!(rule["protocol"], "Tcp");
    assert_eq!(rule["access"], "Allow");
    assert_eq!(rule["direction"], "Inbound");
    assert_eq!(rule["sourceAddressPrefix"], "*");

    let ip = put_body(&requests, "/publicIPAddresses/dev1-ip");
    assert_eq!(ip["sku"]["name"], "Standard");
    assert_eq!(ip["properties"]["publicIPAllocationMethod"], "Static");

    let vnet = put_body(&requests, "/virtualNetworks/azlin-vnet-westus2");
    assert!(vnet["properties"]["subnets"][0]["properties"]["addressPrefix"].is_string());

    assert_nic_wiring(&requests, "dev1", "westus2");

    let put_vm = put_body(&requests, "/virtualMachines/dev1");
    assert_eq!(put_vm["location"], "westus2");
    let p = &put_vm["properties"];
    assert_eq!(p["hardwareProfile"]["vmSize"], "Standard_B2s");
    let image = &p["storageProfile"]["imageReference"];
    assert_eq!(
        (
            image["publisher"].as_str(),
            image["offer"].as_str(),
            image["sku"].as_str(),
            image["version"].as_str()
        ),
        (
            Some("Canonical"),
            Some("ubuntu-24_04-lts"),
            Some("server"),
            Some("latest")
        )
    );
    assert_eq!(p["storageProfile"]["osDisk"]["createOption"], "FromImage");
    let os = &p["osProfile"];
    assert_eq!(os["adminUsername"], "azureuser");
    assert_eq!(os["computerName"], "dev1");
    assert!(os.get("adminPassword").is_none());
    assert_eq!(
        os["linuxConfiguration"]["disablePasswordAuthentication"],
        true
    );
    let key = &os["linuxConfiguration"]["ssh"]["publicKeys"][0];
    assert_eq!(key["path"], "/home/azureuser/.ssh/authorized_keys");
    assert_eq!(key["keyData"], ADMIN_KEY);
    let custom = base64::engine::general_purpose::STANDARD
        .decode(os["customData"].as_str().unwrap())
        .unwrap();
    assert_eq!(String::from_utf8(custom).unwrap(), req.user_data);
    assert!(
        p["networkProfile"]["networkInterfaces"][0]["id"]
            .as_str()
            .unwrap()
            .ends_with("/networkInterfaces/dev1-nic")
    );

    // Tags on every per-VM resource: azlin's and the spec's.
    assert_tags_on_vm_resources(
        &requests,
        "dev1",
        &[
            ("azlin-managed", "true"),
            ("azlin-vm", "dev1"),
            ("azlin-request", "req-1"),
            ("team", "platform"),
        ],
    );
    let disk = double
        .resources()
        .into_iter()
        .find(|r| r.id.ends_with("/disks/dev1-osdisk"))
        .unwrap();
    assert_eq!(
        (
            disk.tag("azlin-managed"),
            disk.tag("azlin-vm"),
            disk.tag("azlin-request")
        ),
        (Some("true"), Some("dev1"), Some("req-1")),
        "the OS disk is tagged once the VM made it: {:#}",
        disk.body
    );
    assert_eq!(put_vm["tags"]["azlin-ip"], vm.address.as_str());
    assert_eq!(
        put_vm["tags"]["azlin-host-key"],
        HOST_KEY.rsplit_once(' ').unwrap().0
    );

    // The address is the one Azure gave the public IP.
    let pip = double
        .resources()
        .into_iter()
        .find(|r| r.id.ends_with("/publicIPAddresses/dev1-ip"))
        .unwrap();
    assert_eq!(pip.body["properties"]["ipAddress"], vm.address.as_str());

    // Long-running operations were followed: every PUT that answered 201 was polled.
    let puts = requests
        .iter()
        .filter(|r| {
            r.method == "PUT" && r.status == 201 && !r.path_ends_with("/resourceGroups/azlin-test")
        })
        .count();
    let polls = requests
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/operations/"))
        .count();
    assert_eq!(puts, 5, "NSG, IP, VNet, NIC, VM");
    assert!(
        polls >= 2 * puts,
        "each operation polled until done (once InProgress): {polls}"
    );

    // get and list
    let got = provider.get(&name("dev1")).await.unwrap().unwrap();
    assert_eq!(
        (got.address.as_str(), got.state, got.host_key.as_str()),
        (
            vm.address.as_str(),
            VmState::Running,
            HOST_KEY.rsplit_once(' ').unwrap().0
        )
    );
    let listed = provider.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name.as_str(), "dev1");
    assert_eq!(listed[0].request_id, "req-1");
    assert_eq!(
        provider
            .find_by_request("req-1")
            .await
            .unwrap()
            .unwrap()
            .name
            .as_str(),
        "dev1"
    );

    // stop = deallocate, start
    double.clear_requests();
    provider.stop(&name("dev1")).await.unwrap();
    let requests = double.requests();
    assert_eq!(
        the_request(&requests, "POST", "/virtualMachines/dev1/deallocate").status,
        202
    );
    assert!(
        requests
            .iter()
            .any(|r| r.method == "GET" && r.path.contains("/operations/"))
    );
    assert_eq!(
        double.power_state(&vm.details["vm_id"]).as_deref(),
        Some("deallocated")
    );
    assert_eq!(
        provider.get(&name("dev1")).await.unwrap().unwrap().state,
        VmState::Stopped
    );
    let started = provider.start(&name("dev1")).await.unwrap();
    assert_eq!(started.state, VmState::Running);
    assert_eq!(started.address, vm.address);

    // delete: everything azlin made, in dependency order (the double refuses any other order).
    double.clear_requests();
    let report = provider.delete(&name("dev1")).await.unwrap();
    assert_eq!(
        report.removed,
        vec![
            "virtual machine dev1",
            "network interface dev1-nic",
            "public IP address dev1-ip",
            "network security group dev1-nsg",
            "OS disk dev1-osdisk",
            "virtual network azlin-vnet-westus2",
            "resource group azlin-test",
        ]
    );
    let deletes: Vec<String> = double
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.path.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(
        deletes,
        [
            "dev1",
            "dev1-nic",
            "dev1-ip",
            "dev1-nsg",
            "dev1-osdisk",
            "azlin-vnet-westus2",
            "azlin-test"
        ]
    );
    assert_only_existence_checks_failed(&double.requests());
    assert_no_resources(&double);
    assert!(double.resource_groups().is_empty());

    assert!(provider.get(&name("dev1")).await.unwrap().is_none());
    assert_eq!(
        provider.delete(&name("dev1")).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        provider.stop(&name("dev1")).await.unwrap_err().kind,
        ErrorKind::NotFound
    );

    // az was asked for the account once and for a token once (it lives an hour).
    assert_eq!(az_calls(&az, "account show"), 1, "{:?}", az.calls());
    assert_eq!(
        az_calls(&az, "account get-access-token"),
        1,
        "{:?}",
        az.calls()
    );
}

#[tokio::test]
async fn a_group_the_user_made_and_other_vms_are_kept() {
    let (double, provider, _az) = env().await;
    double.add_resource_group(
        "team-rg",
        "westus2",
        &BTreeMap::from([("owner".to_string(), "me".to_string())]),
    );
    let mut a = request("keep-a", "ra");
    a.spec.resource_group = "team-rg".into();
    let mut b = request("keep-b", "rb");
    b.spec.resource_group = "team-rg".into();
    provider.create(&a).await.unwrap();
    provider.create(&b).await.unwrap();
    assert!(
        !double
            .requests()
            .iter()
            .any(|r| r.method == "PUT" && r.path_ends_with("/resourceGroups/team-rg")),
        "an existing group is not rewritten"
    );

    let report = provider.delete(&name("keep-a")).await.unwrap();
    assert_eq!(report.removed.len(), 5, "{:?}", report.removed);
    assert!(
        double
            .resources()
            .iter()
            .any(|r| r.id.ends_with("/virtualNetworks/azlin-vnet-westus2")),
        "the VNet is shared with keep-b"
    );

    let report = provider.delete(&name("keep-b")).await.unwrap();
    assert!(
        report
            .removed
            .contains(&"virtual network azlin-vnet-westus2".to_string())
    );
    assert!(
        !report
            .removed
            .iter()
            .any(|r| r.starts_with("resource group")),
        "{:?}",
        report.removed
    );
    assert_eq!(double.resource_groups(), vec!["team-rg".to_string()]);
    assert_no_resources(&double);
}

#[tokio::test]
async fn the_same_request_twice_makes_one_vm_and_a_taken_name_is_refused() {
    let (double, provider, _az) = env().await;
    let first = provider.create(&request("once", "r-1")).await.unwrap();
    double.clear_requests();
    let again = provider.create(&request("once", "r-1")).await.unwrap();
    assert_eq!(again.name, first.name);
    assert_eq!(again.address, first.address);
    assert_eq!(
        double.request_count(),
        1,
        "a redelivered request costs one list call"
    );

    let err = provider.create(&request("once", "r-2")).await.unwrap_err();
    assert_fails(&err, ErrorKind::Conflict, &["once"]);
    assert!(err.cleaned_up.is_empty());
    assert_eq!(
        double
            .resources()
            .iter()
            .filter(|r| r.resource_type == "Microsoft.Compute/virtualMachines")
            .count(),
        1
    );

    // A VM of the same name that azlin did not make is never touched.
    double.insert_vm("azlin-test", "foreign", "westus2", &BTreeMap::new());
    let err = provider
        .create(&request("foreign", "r-3"))
        .await
        .unwrap_err();
    assert_fails(&err, ErrorKind::Conflict, &[]);
    assert!(
        !double
            .requests()
            .iter()
            .any(|r| r.method == "PUT" && r.path.contains("foreign"))
    );
    assert_eq!(
        provider.delete(&name("foreign")).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert!(
        double
            .resources()
            .iter()
            .any(|r| r.id.ends_with("/virtualMachines/foreign"))
    );
}

#[tokio::test]
async fn the_ssh_source_prefix_and_image_come_from_the_settings() {
    let (double, provider, _az) = env_with_settings(|s| {
        s.ssh_source_prefix = Some("198.51.100.7/32".into());
        s.image = azlin_providers::azure::ImageRef::parse_urn(
            "Canonical:ubuntu-24_04-lts:server-arm64:24.04.202501010",
        )
        .unwrap();
    })
    .await;
    provider.create(&request("pfx", "r")).await.unwrap();
    let requests = double.requests();
    let nsg = put_body(&requests, "/networkSecurityGroups/pfx-nsg");
    assert_eq!(
        nsg["properties"]["securityRules"][0]["properties"]["sourceAddressPrefix"],
        "198.51.100.7/32"
    );
    let vm = put_body(&requests, "/virtualMachines/pfx");
    assert_eq!(
        vm["properties"]["storageProfile"]["imageReference"]["sku"],
        "server-arm64"
    );
    assert_eq!(
        vm["properties"]["storageProfile"]["imageReference"]["version"],
        "24.04.202501010"
    );
    assert!(
        !warned_open_ssh("pfx"),
        "a configured prefix is not warned about"
    );
}

/// Whether a warning said that VM `vm`'s SSH is open to any address.
fn warned_open_ssh(vm: &str) -> bool {
    log_text().lines().any(|l| {
        l.contains("WARN")
            && l.contains(vm)
            && l.contains("open to any address")
            && l.contains("ssh_source_prefix")
    })
}

#[tokio::test]
async fn ssh_open_to_any_address_is_warned_about() {
    let (double, provider, _az) = env().await;
    provider.create(&request("open1", "r")).await.unwrap();
    let nsg = put_body(&double.requests(), "/networkSecurityGroups/open1-nsg").clone();
    assert_eq!(
        nsg["properties"]["securityRules"][0]["properties"]["sourceAddressPrefix"],
        "*"
    );
    assert!(warned_open_ssh("open1"), "{}", log_text());
}

// ---------------------------------------------------------------------------------------------
// Failures

#[tokio::test]
async fn a_create_failing_at_the_vm_step_removes_what_it_made() {
    let (double, provider, _az) = env().await;
    double.inject(Fault::FailVmCreate {
        code: "OSProvisioningClientError".into(),
        message: "OS provisioning for VM 'broken' failed.".into(),
    });
    let err = provider
        .create(&request("broken", "r-broken"))
        .await
        .unwrap_err();
    assert_fails(&err, ErrorKind::Provision, &["OSProvisioningClientError"]);
    assert_eq!(err.kind.exit_code().code(), 4);
    assert_cleaned_up(
        &err,
        &[
            "network interface broken-nic",
            "public IP address broken-ip",
            "network security group broken-nsg",
            // Azure leaves the failed VM and its disk behind; the cleanup removes them too.
            "virtual machine broken",
            "OS disk broken-osdisk",
        ],
    );
    assert_no_resources(&double);
    assert!(provider.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn any_failure_once_resources_were_made_exits_4_after_cleanup() {
    let (double, provider, _az) = env().await;
    // A role that may write networks but not VMs: refused after the NSG, IP, VNet and NIC.
    double.inject(Fault::RejectVmCreate {
        status: 403,
        code: "AuthorizationFailed".into(),
        message: "The client 'developer@contoso.example' does not have authorization to perform action 'Microsoft.Compute/virtualMachines/write' over scope '/subscriptions/s/resourceGroups/azlin-test/providers/Microsoft.Compute/virtualMachines/denied'.".into(),
    });
    // Throttling that outlasts every retry (6 attempts).
    let throttled = || Fault::RejectVmCreate {
        status: 429,
        code: "SubscriptionRequestsThrottled".into(),
        message: "Number of write requests for subscription exceeded the limit.".into(),
    };
    for (vm, cause) in [
        ("denied", "AuthorizationFailed"),
        ("throttled", "SubscriptionRequestsThrottled"),
    ] {
        if vm == "throttled" {
            (0..6).for_each(|_| double.inject(throttled()));
        }
        let err = provider
            .create(&request(vm, &format!("r-{vm}")))
            .await
            .unwrap_err();
        assert_fails(&err, ErrorKind::Provision, &[cause]);
        assert_eq!(err.kind.exit_code().code(), 4, "{vm}");
        // Throttling may pass; a refused permission will not.
        assert_eq!(err.retryable, vm == "throttled", "{vm}");
        assert_cleaned_up(
            &err,
            &[
                &format!("network interface {vm}-nic"),
                &format!("public IP address {vm}-ip"),
                &format!("network security group {vm}-nsg"),
            ],
        );
        assert_no_resources(&double);
    }
}

#[tokio::test]
async fn a_disk_azlin_did_not_make_is_never_deleted() {
    let (double, provider, _az) = env().await;
    let theirs = BTreeMap::from([("owner".to_string(), "me".to_string())]);
    // Someone's own disk has the name azlin gives the OS disk of VM `clash`: Azure refuses
    // the VM, and the cleanup after it leaves the disk alone.
    let clash = double.insert_disk("azlin-test", "clash-osdisk", "westus2", &theirs, None);
    let err = provider.create(&request("clash", "r-c")).await.unwrap_err();
    assert_fails(&err, ErrorKind::Provision, &["ConflictingUserInput"]);
    assert_cleaned_up(&err, &["network interface clash-nic"]);
    assert!(
        !err.cleaned_up.iter().any(|r| r.contains("osdisk")),
        "{:?}",
        err.cleaned_up
    );

    // An azlin VM without a disk of its own, and an unattached disk named as its OS disk would
    // be: delete removes the VM only.
    double.insert_vm(
        "azlin-test",
        "old",
        "westus2",
        &BTreeMap::from([
            ("azlin-managed".to_string(), "true".to_string()),
            ("azlin-vm".to_string(), "old".to_string()),
        ]),
    );
    let old = double.insert_disk("azlin-test", "old-osdisk", "westus2", &theirs, None);
    let report = provider.delete(&name("old")).await.unwrap();
    assert_eq!(report.removed, ["virtual machine old"]);

    let held: Vec<String> = double.resources().into_iter().map(|r| r.id).collect();
    assert_eq!(held, [clash.clone(), old.clone()]);
    assert!(
        !double
            .requests()
            .iter()
            .any(|r| r.method == "DELETE" && (r.path == clash || r.path == old)),
        "{:#?}",
        double.requests()
    );
}

#[tokio::test]
async fn custom_data_may_be_65535_bytes_and_not_one_more() {
    let (double, provider, _az) = env().await;
    let sized = |vm: &str, bytes: usize| {
        let mut r = request(vm, vm);
        let head = format!("#cloud-config\nhostname: {vm}\n#");
        r.user_data = format!("{head}{}", "x".repeat(bytes - head.len()));
        r
    };
    let err = provider
        .create(&sized("over", MAX_CUSTOM_DATA_BYTES + 1))
        .await
        .unwrap_err();
    assert_fails(&err, ErrorKind::Usage, &["65536 bytes", "at most 65535"]);
    assert_eq!(double.request_count(), 0, "refused before anything is sent");

    // The most Azure takes (the double refuses more, with ARM's own rule) is sent whole.
    provider
        .create(&sized("most", MAX_CUSTOM_DATA_BYTES))
        .await
        .unwrap();
    let vm = put_body(&double.requests(), "/virtualMachines/most").clone();
    let sent = base64::engine::general_purpose::STANDARD
        .decode(
            vm["properties"]["osProfile"]["customData"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    assert_eq!(sent.len(), 65_535);
}

#[tokio::test]
async fn quota_and_sku_refusals_say_what_to_do_and_clean_up() {
    let (double, provider, _az) = env().await;
    double.inject(Fault::quota_exceeded("standardBSFamily", "westus2"));
    let err = provider.create(&request("quota", "r-q")).await.unwrap_err();
    assert_fails(&err, ErrorKind::Provision, &["quota", "--region"]);
    assert_cleaned_up(&err, &["network interface quota-nic"]);
    assert_no_resources(&double);

    double.inject(Fault::sku_not_available("Standard_B2s", "westus2"));
    let err = provider.create(&request("sku", "r-s")).await.unwrap_err();
    assert_fails(&err, ErrorKind::Provision, &["SkuNotAvailable", "--size"]);
    assert_no_resources(&double);
}

#[tokio::test]
async fn throttling_is_retried_after_the_wait_azure_asks_for() {
    let (double, provider, _az) = env().await;
    provider.authenticate().await.unwrap();
    double.inject(Fault::Throttle {
        requests: 2,
        retry_after_secs: 1,
    });
    let started = Instant::now();
    assert!(provider.list().await.unwrap().is_empty());
    let statuses: Vec<u16> = double.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 429, 200]);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After honoured: {:?}",
        started.elapsed()
    );

    // 5xx in the middle of a create is retried too.
    double.clear_requests();
    double.inject(Fault::ServerError {
        requests: 2,
        retry_after_secs: 0,
    });
    provider.create(&request("retry", "r")).await.unwrap();
    assert_eq!(
        double.requests().iter().filter(|r| r.status == 503).count(),
        2
    );
}

#[tokio::test]
async fn long_running_operations_wait_as_long_as_azure_asks() {
    let (double, provider, _az) = env().await;
    provider.create(&request("slow", "r")).await.unwrap();
    double.set_operation_retry_after(1);
    double.set_polls_before_done(1);
    double.clear_requests();
    let started = Instant::now();
    provider.stop(&name("slow")).await.unwrap();
    // 202 (Retry-After: 1) → wait → InProgress (Retry-After: 1) → wait → Succeeded.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let polls: Vec<u16> = double
        .requests()
        .iter()
        .filter(|r| r.path.contains("/operations/"))
        .map(|r| r.status)
        .collect();
    assert_eq!(polls, [200, 200]);
}

#[tokio::test]
async fn operations_with_only_a_location_header_are_followed() {
    let (double, provider, _az) = env().await;
    double.set_location_only(true);
    provider.create(&request("loc", "r")).await.unwrap();
    double.set_operation_retry_after(1);
    double.clear_requests();
    let started = Instant::now();
    provider.stop(&name("loc")).await.unwrap();
    // 202 (Retry-After: 1) → wait → 202 (Retry-After: 1) → wait → 200.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let vm_id = format!(
        "/subscriptions/{}/resourceGroups/azlin-test/providers/Microsoft.Compute/virtualMachines/loc",
        double.subscription_id()
    );
    assert_eq!(double.power_state(&vm_id).as_deref(), Some("deallocated"));

    double.set_operation_retry_after(0);
    let report = provider.delete(&name("loc")).await.unwrap();
    assert!(report.removed.contains(&"OS disk loc-osdisk".to_string()));
    assert_no_resources(&double);

    let requests = double.requests();
    let polls = |kind: &str| {
        requests
            .iter()
            .filter(|r| r.path.contains(kind))
            .map(|r| r.status)
            .collect::<Vec<_>>()
    };
    assert!(
        polls("/operations/").is_empty(),
        "there was no Azure-AsyncOperation to poll"
    );
    let results = polls("/operationResults/");
    assert_eq!(&results[..2], [202, 200], "the stop, polled until done");
    assert!(results.len() >= 2 * 6, "and every delete: {results:?}");
}

#[tokio::test]
async fn an_operation_azure_cancels_is_a_clear_error() {
    let (double, provider, _az) = env().await;
    provider.create(&request("cxl", "r")).await.unwrap();
    double.inject(Fault::CancelOperations { operations: 1 });
    let err = provider.stop(&name("cxl")).await.unwrap_err();
    assert_fails(
        &err,
        ErrorKind::Transient,
        &[
            "stopping (deallocating) VM cxl failed (OperationCanceled)",
            "Azure canceled the operation",
            "try again",
        ],
    );
    let vm = provider.get(&name("cxl")).await.unwrap().unwrap();
    assert_eq!(vm.state, VmState::Running, "nothing changed");

    // The first operation of a create canceled: a provisioning failure after cleanup.
    double.inject(Fault::CancelOperations { operations: 1 });
    let err = provider.create(&request("cxl2", "r2")).await.unwrap_err();
    assert_fails(
        &err,
        ErrorKind::Provision,
        &["creating network security group cxl2-nsg", "canceled"],
    );
    assert_cleaned_up(&err, &["network security group cxl2-nsg"]);
    assert!(
        !double.resources().iter().any(|r| r.id.contains("cxl2")),
        "{:#?}",
        double.resources()
    );
}

#[tokio::test]
async fn start_is_a_post_to_the_start_action_of_the_vm() {
    let (double, provider, _az) = env().await;
    let vm = provider.create(&request("st", "r")).await.unwrap();
    provider.stop(&name("st")).await.unwrap();
    double.clear_requests();
    let started = provider.start(&name("st")).await.unwrap();
    assert_eq!(started.state, VmState::Running);
    assert_eq!(
        double.power_state(&vm.details["vm_id"]).as_deref(),
        Some("running")
    );
    let requests = double.requests();
    let posts: Vec<_> = requests.iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 1, "{posts:#?}");
    let post = the_request(&requests, "POST", "/virtualMachines/st/start");
    assert_eq!(
        post.path,
        format!(
            "/subscriptions/{}/resourceGroups/azlin-test/providers/Microsoft.Compute/virtualMachines/st/start",
            double.subscription_id()
        )
    );
    assert_eq!(
        post.query,
        BTreeMap::from([("api-version".to_string(), "2025-04-01".to_string())])
    );
    assert_eq!(post.body, None);
    assert_eq!(post.status, 202);
}

#[tokio::test]
async fn throttling_that_never_ends_gives_up_with_a_transient_error() {
    let (double, provider, _az) = env().await;
    double.inject(Fault::Throttle {
        requests: 100,
        retry_after_secs: 0,
    });
    let err = provider.list().await.unwrap_err();
    assert_fails(&err, ErrorKind::Transient, &[]);
    assert_eq!(double.request_count(), 6, "bounded attempts");
}

#[tokio::test]
async fn a_refused_token_is_refreshed_once() {
    let (double, provider, az) = env().await;
    double.inject(Fault::ExpireToken { requests: 1 });
    provider.list().await.unwrap();
    assert_eq!(
        double
            .requests()
            .iter()
            .map(|r| r.status)
            .collect::<Vec<_>>(),
        [401, 200]
    );
    assert_eq!(az_calls(&az, "account get-access-token"), 2);

    double.inject(Fault::ExpireToken { requests: 2 });
    let err = provider.list().await.unwrap_err();
    assert_fails(&err, ErrorKind::Auth, &["az login"]);
}

#[tokio::test]
async fn tokens_are_refreshed_before_they_expire() {
    // Tokens that live 60 s are inside the 5-minute refresh margin: every call asks az again.
    let (double, provider, az) = env_with_account(|a| a.token_lifetime_secs = 60).await;
    provider.list().await.unwrap();
    provider.list().await.unwrap();
    provider.list().await.unwrap();
    assert_eq!(double.request_count(), 3);
    assert_eq!(az_calls(&az, "account get-access-token"), 3);
    assert_eq!(az_calls(&az, "account show"), 1);
}

#[tokio::test]
async fn the_token_is_asked_for_the_arm_audience() {
    let (double, provider, az) = env().await;
    provider.list().await.unwrap();
    let asked: Vec<String> = az
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("account get-access-token"))
        .collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(
        asked[0].contains(" --resource https://management.azure.com/ "),
        "{asked:?}"
    );
    assert!(
        asked[0].contains(&format!(" --subscription {} ", double.subscription_id())),
        "{asked:?}"
    );
    // The stub (like ARM) tells audiences apart: a token for another one would be refused.
    let other = std::process::Command::new(az.program())
        .args([
            "account",
            "get-access-token",
            "--resource",
            "https://graph.microsoft.com/",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    let other: serde_json::Value = serde_json::from_slice(&other.stdout).unwrap();
    assert_ne!(other["accessToken"].as_str(), Some(double.token()));
}

#[tokio::test]
async fn plain_http_endpoints_are_refused_off_loopback() {
    let with = |endpoint: &str| {
        AzureProvider::new(AzureSettings {
            endpoint: endpoint.to_string(),
            ..AzureSettings::default()
        })
    };
    for endpoint in ["http://management.azure.com", "http://203.0.113.5:8080/"] {
        let err = with(endpoint).unwrap_err();
        assert_fails(&err, ErrorKind::Usage, &[endpoint, "https://", "loopback"]);
        assert_eq!(err.kind.exit_code().code(), 64);
    }
    for endpoint in [
        "https://management.azure.com",
        "http://127.0.0.1:1",
        "http://[::1]:1",
        "http://localhost:1",
    ] {
        assert!(with(endpoint).is_ok(), "{endpoint}");
    }
}

#[tokio::test]
async fn missing_az_is_a_prerequisite_error_and_sends_nothing() {
    let double = start_double().await;
    let empty = tempfile::tempdir().unwrap();
    let provider = AzureProvider::new(AzureSettings {
        endpoint: double.endpoint().to_string(),
        search_path: Some(empty.path().as_os_str().to_owned()),
        ..AzureSettings::default()
    })
    .unwrap();
    assert_eq!(provider.required_tools()[0].program, "az");
    let err = provider.authenticate().await.unwrap_err();
    assert_fails(&err, ErrorKind::Prerequisites, &["install", "az login"]);
    assert_eq!(err.kind.exit_code().code(), 2);
    assert_eq!(
        provider.list().await.unwrap_err().kind,
        ErrorKind::Prerequisites
    );
    assert_eq!(
        provider.create(&request("x", "r")).await.unwrap_err().kind,
        ErrorKind::Prerequisites
    );
    assert_eq!(
        provider.delete(&name("x")).await.unwrap_err().kind,
        ErrorKind::Prerequisites
    );
    assert_eq!(double.request_count(), 0);
}

#[tokio::test]
async fn az_not_logged_in_is_an_auth_error_and_sends_nothing() {
    let double = start_double().await;
    let az = StubAz::logged_out().unwrap();
    let provider = AzureProvider::new(settings_for(&double, &az)).unwrap();
    let err = provider.authenticate().await.unwrap_err();
    assert_fails(&err, ErrorKind::Auth, &["az login"]);
    assert_eq!(err.kind.exit_code().code(), 3);
    assert_eq!(
        provider.create(&request("x", "r")).await.unwrap_err().kind,
        ErrorKind::Auth
    );
    assert_eq!(provider.list().await.unwrap_err().kind, ErrorKind::Auth);
    assert_eq!(
        provider.start(&name("x")).await.unwrap_err().kind,
        ErrorKind::Auth
    );
    assert_eq!(double.request_count(), 0);
    assert!(
        az.calls().iter().all(|c| c.starts_with("account ")),
        "{:?}",
        az.calls()
    );
}

#[tokio::test]
async fn an_unknown_subscription_is_an_auth_error() {
    let (double, provider, _az) = env_with_settings(|s| {
        s.subscription = Some("00000000-0000-0000-0000-000000000000".into());
    })
    .await;
    let err = provider.authenticate().await.unwrap_err();
    assert_fails(&err, ErrorKind::Auth, &["not found"]);
    assert_eq!(double.request_count(), 0);
}

#[tokio::test]
async fn bad_requests_are_refused_before_anything_is_sent() {
    let (double, provider, az) = env().await;
    let mut big = request("big", "r");
    big.user_data = format!("#cloud-config\n#{}", "x".repeat(64 * 1024));
    let err = provider.create(&big).await.unwrap_err();
    assert_fails(&err, ErrorKind::Usage, &["65535"]);

    let mut local = request("loc", "r");
    local.spec.region = "local".into();
    assert_eq!(
        provider.create(&local).await.unwrap_err().kind,
        ErrorKind::Usage
    );

    let mut tags = request("tags", "r");
    tags.spec.tags.insert("bad/name".into(), "v".into());
    assert_eq!(
        provider.create(&tags).await.unwrap_err().kind,
        ErrorKind::Usage
    );

    let mut keyless = request("keyless", "r");
    keyless.admin_public_key = String::new();
    assert_eq!(
        provider.create(&keyless).await.unwrap_err().kind,
        ErrorKind::KeySetup
    );

    assert_eq!(double.request_count(), 0);
    assert!(az.calls().is_empty(), "{:?}", az.calls());
}

// ---------------------------------------------------------------------------------------------
// list: one call

fn azlin_tags(vm: &str, i: usize) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("azlin-managed".to_string(), "true".to_string()),
        ("azlin-vm".to_string(), vm.to_string()),
        ("azlin-request".to_string(), format!("req-{i}")),
        ("azlin-ip".to_string(), format!("198.51.100.{}", i + 1)),
        (
            "azlin-host-key".to_string(),
            "ssh-ed25519 AAAAhost".to_string(),
        ),
    ])
}

#[tokio::test]
async fn list_of_50_vms_is_one_http_request() {
    let (double, provider, _az) = env().await;
    for i in 0..50 {
        let vm = format!("fleet-{i:02}");
        double.insert_vm(
            if i % 2 == 0 { "azlin-a" } else { "azlin-b" },
            &vm,
            "westus2",
            &azlin_tags(&vm, i),
        );
    }
    for i in 0..5 {
        double.insert_vm(
            "someone-else",
            &format!("other-{i}"),
            "westus2",
            &BTreeMap::new(),
        );
    }
    provider.authenticate().await.unwrap();
    double.clear_requests();
    let vms = provider.list().await.unwrap();
    assert_eq!(vms.len(), 50);
    assert_eq!(double.request_count(), 1, "{:#?}", double.requests());
    let r = &double.requests()[0];
    assert_eq!(r.method, "GET");
    assert!(r.path_ends_with(&format!(
        "/subscriptions/{}/providers/Microsoft.Compute/virtualMachines",
        double.subscription_id()
    )));
    assert_eq!(r.query.get("statusOnly").map(String::as_str), Some("true"));
    let vm = vms.iter().find(|v| v.name.as_str() == "fleet-07").unwrap();
    assert_eq!(
        (vm.state, vm.address.as_str(), vm.request_id.as_str()),
        (VmState::Running, "198.51.100.8", "req-7")
    );
    assert_eq!(vm.details["resource_group"], "azlin-b");

    // get is the same single call.
    double.clear_requests();
    assert!(provider.get(&name("fleet-33")).await.unwrap().is_some());
    assert_eq!(double.request_count(), 1);

    // When ARM pages the answer, the pages are followed.
    double.set_list_page_size(20);
    double.clear_requests();
    assert_eq!(provider.list().await.unwrap().len(), 50);
    assert_eq!(double.request_count(), 3);
}

// ---------------------------------------------------------------------------------------------
// Secrets

#[tokio::test]
async fn no_token_in_logs_or_debug_output() {
    // Short-lived tokens: az is asked for one before every call, so there are many to leak.
    let (double, provider, _az) = env_with_account(|a| a.token_lifetime_secs = 30).await;
    let token = double.token().to_string();
    provider.authenticate().await.unwrap();
    provider
        .create(&request("secret", "r-secret"))
        .await
        .unwrap();
    provider.list().await.unwrap();
    provider.stop(&name("secret")).await.unwrap();
    provider.delete(&name("secret")).await.unwrap();
    double.inject(Fault::ExpireToken { requests: 1 });
    provider.list().await.unwrap();

    let logged = log_text();
    assert!(
        logged.contains("ARM request"),
        "the capture works at trace level"
    );
    assert!(
        logged.contains("got an ARM access token"),
        "token handling is logged"
    );
    assert!(!logged.contains(&token), "the token was logged");
    let debug = format!("{provider:?} {:?}", provider.settings());
    assert!(!debug.contains(&token), "{debug}");
    assert!(debug.contains("redacted"), "{debug}");
    // The private host key in the user data is not logged either.
    assert!(
        !logged.contains("b3BlbnNzaC1rZXktdjEAAAAA"),
        "user data was logged"
    );
}

// ---------------------------------------------------------------------------------------------
// Snapshots

#[tokio::test]
async fn snapshots_of_the_os_disk_are_taken_listed_restored_and_deleted() {
    let (double, provider, _az) = env().await;
    let vm = name("snapvm");
    provider
        .create(&request("snapvm", "r-snap"))
        .await
        .expect("created");
    let os_disk = |double: &ArmDouble| {
        let vm = double
            .resources()
            .into_iter()
            .find(|r| r.resource_type == "Microsoft.Compute/virtualMachines")
            .expect("the VM");
        vm.body
            .pointer("/properties/storageProfile/osDisk/managedDisk/id")
            .and_then(serde_json::Value::as_str)
            .expect("an OS disk")
            .to_string()
    };
    let first_disk = os_disk(&double);

    let taken = provider.snapshot_create(&vm, "s1").await.expect("snapshot");
    assert_eq!((taken.name.as_str(), taken.with_memory), ("s1", false));
    assert_eq!(taken.size_bytes, 30 << 30);
    let snapshot = double
        .resources()
        .into_iter()
        .find(|r| r.resource_type == "Microsoft.Compute/snapshots")
        .expect("a snapshot resource");
    assert_eq!(snapshot.tag("azlin-vm"), Some("snapvm"));
    assert_eq!(
        snapshot
            .body
            .pointer("/properties/creationData/sourceResourceId"),
        Some(&serde_json::json!(first_disk)),
        "a copy of the VM's OS disk"
    );
    let again = provider
        .snapshot_create(&vm, "s1")
        .await
        .expect_err("taken");
    assert_fails(&again, ErrorKind::Usage, &["already has a snapshot 's1'"]);
    let listed = provider.snapshot_list(&vm).await.expect("list");
    assert_eq!(
        listed.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["s1"]
    );

    // A restore swaps in a disk made from the snapshot, with the VM deallocated, and starts
    // the VM again; the replaced disk is gone.
    let restored = provider.snapshot_restore(&vm, "s1").await.expect("restore");
    assert_eq!(restored.state, VmState::Running);
    let second_disk = os_disk(&double);
    assert_ne!(second_disk, first_disk);
    let disks: Vec<_> = double
        .resources()
        .into_iter()
        .filter(|r| r.resource_type == "Microsoft.Compute/disks")
        .collect();
    assert_eq!(disks.len(), 1, "{disks:#?}");
    assert_eq!(disks[0].id, second_disk);
    assert_eq!(
        disks[0]
            .body
            .pointer("/properties/creationData/sourceResourceId"),
        Some(&serde_json::json!(snapshot.id)),
    );
    let missing = provider
        .snapshot_restore(&vm, "nope")
        .await
        .expect_err("no such");
    assert_fails(&missing, ErrorKind::NotFound, &["no snapshot 'nope'"]);

    provider.snapshot_delete(&vm, "s1").await.expect("delete");
    assert!(provider.snapshot_list(&vm).await.expect("list").is_empty());
    // A VM's delete takes its snapshots with it.
    provider.snapshot_create(&vm, "s2").await.expect("snapshot");
    provider.delete(&vm).await.expect("delete");
    assert_no_resources(&double);
}
