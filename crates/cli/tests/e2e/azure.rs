//! The `azure` provider through the real binary: `azlin new|list|delete --provider azure`
//! against the ARM test double (`azlin_testkit::ArmDouble`, HTTP on 127.0.0.1) with a stub `az`
//! first on `PATH` (`azlin_testkit::StubAz`). Issue 5.
//!
//! The double hands out "public" addresses from 127.100.0.0/24, on this machine's loopback, so
//! that no packet of a test leaves the machine: the SSH wait of `new` knocks on a port where no
//! VM answers and fails after the short `ssh_timeout_secs` of the test config: exit 5 with the
//! VM left running.
//!
//! The tests are synchronous (they run azlin as a subprocess); each starts its own double on a
//! background tokio runtime that lives as long as the test.

use crate::support::{Azlin, Run};
use azlin_testkit::arm_double::checks::{
    assert_nic_wiring, assert_only_existence_checks_failed, assert_tags_on_vm_resources, put_body,
};
use azlin_testkit::{ArmDouble, AzAccount, Fault, StubAz};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One azlin installation wired to its own ARM double and stub `az`.
struct AzureEnv {
    azlin: Azlin,
    az: StubAz,
    double: ArmDouble,
    // Dropped last: the double's server task runs on it.
    _runtime: tokio::runtime::Runtime,
}

/// How `az` looks to azlin.
enum AzState {
    LoggedIn,
    LoggedOut,
    /// Not on `PATH` at all.
    Missing,
}

/// The test's `PATH` without any folder holding an `az` program (a real one, if installed).
fn path_without_az() -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|dir| !dir.join("az").exists())
        .collect();
    std::env::join_paths(dirs).unwrap().into_string().unwrap()
}

impl AzureEnv {
    fn start(state: AzState) -> AzureEnv {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let double = runtime.block_on(ArmDouble::start()).unwrap();
        let az = match state {
            AzState::LoggedIn | AzState::Missing => {
                StubAz::logged_in(&AzAccount::for_double(&double)).unwrap()
            }
            AzState::LoggedOut => StubAz::logged_out().unwrap(),
        };
        let rest = path_without_az();
        let path = match state {
            AzState::Missing => rest,
            _ => az.path_first(Some(rest.as_ref())).into_string().unwrap(),
        };
        let env = AzureEnv {
            azlin: Azlin::with_path(&path),
            az,
            double,
            _runtime: runtime,
        };
        env.config_azure(&format!("endpoint = \"{}\"", env.double.endpoint()));
        env
    }

    /// Writes the test config (short SSH and cloud-init waits) with `azure` as its `[azure]`
    /// table.
    fn config_azure(&self, azure: &str) {
        self.azlin.config(&format!(
            "ssh_timeout_secs = 1\ncloud_init_timeout_secs = 5\n\n[azure]\n{azure}\n"
        ));
    }

    fn run(&self, args: &[&str]) -> Run {
        self.azlin.run(args)
    }

    /// `azlin new --provider azure --name NAME --no-connect`.
    fn new_vm(&self, name: &str) -> Run {
        self.new_vm_with(&[], name)
    }

    /// [`new_vm`](Self::new_vm) after the global options `global`.
    fn new_vm_with(&self, global: &[&str], name: &str) -> Run {
        let mut args = global.to_vec();
        // Most tests run without `[azure] ssh_source_prefix`: SSH open to anywhere, agreed to.
        args.extend([
            "new",
            "--provider",
            "azure",
            "--name",
            name,
            "--no-connect",
            "--allow-ssh-from-anywhere",
        ]);
        self.run(&args)
    }

    /// `azlin list --provider azure -o json`, as rows.
    fn list(&self) -> Vec<Value> {
        self.run(&["list", "--provider", "azure", "-o", "json"])
            .expect(0)
            .json()
            .as_array()
            .unwrap()
            .clone()
    }

    /// Resource ids the double holds that azlin made (its tag), and every managed disk (made
    /// by Azure for azlin's VMs), plus the resource groups.
    fn azlin_leftovers(&self) -> Vec<String> {
        let mut left = self.double.azlin_resources();
        left.extend(
            self.double
                .resource_groups()
                .into_iter()
                .map(|g| format!("resource group {g}")),
        );
        left
    }
}

/// Asserts `text` (a run's output) names every one of `mentions`.
fn assert_mentions(text: &str, mentions: &[&str]) {
    for mention in mentions {
        assert!(text.contains(mention), "{mention}: {text}");
    }
}

/// Whether `address` is in the double's loopback range (127.100.0.0/24).
fn in_double_range(address: &str) -> bool {
    address
        .parse::<std::net::Ipv4Addr>()
        .is_ok_and(|a| a.octets()[..3] == [127, 100, 0])
}

fn tags(n: usize) -> BTreeMap<String, String> {
    let name = format!("fleet-{n:02}");
    BTreeMap::from([
        ("azlin-managed".to_string(), "true".to_string()),
        ("azlin-vm".to_string(), name),
        ("azlin-request".to_string(), format!("req-{n}")),
        ("azlin-ip".to_string(), format!("127.100.0.{}", n + 1)),
    ])
}

#[test]
fn new_list_delete_an_azure_vm_through_the_binary() {
    let env = AzureEnv::start(AzState::LoggedIn);
    let new = env.new_vm("az1").expect(5);
    assert!(new.stderr.contains("left running"), "{}", new.stderr);
    // No source prefix configured: SSH is open to any address, and azlin says so.
    assert_mentions(&new.stderr, &["open to any address", "ssh_source_prefix"]);

    let requests = env.double.requests();
    // Only existence checks (GET → 404) may have failed; every request names an api-version.
    for r in &requests {
        assert!(r.query.contains_key("api-version"), "{r:?}");
    }
    assert_only_existence_checks_failed(&requests);
    let group = put_body(&requests, "/resourceGroups/azlin");
    assert_eq!(group["location"], "westus2");
    assert_eq!(group["tags"]["azlin-managed"], "true");

    let nsg = put_body(&requests, "/networkSecurityGroups/az1-nsg");
    let rule = &nsg["properties"]["securityRules"][0]["properties"];
    assert_eq!(
        (
            &rule["destinationPortRange"],
            &rule["protocol"],
            &rule["access"],
            &rule["direction"]
        ),
        (
            &Value::from("22"),
            &Value::from("Tcp"),
            &Value::from("Allow"),
            &Value::from("Inbound")
        )
    );

    let ip = put_body(&requests, "/publicIPAddresses/az1-ip");
    assert_eq!(ip["sku"]["name"], "Standard");
    assert_eq!(ip["properties"]["publicIPAllocationMethod"], "Static");

    let vnet = put_body(&requests, "/virtualNetworks/azlin-vnet-westus2");
    assert!(vnet["properties"]["addressSpace"]["addressPrefixes"][0].is_string());
    assert!(vnet["properties"]["subnets"][0]["properties"]["addressPrefix"].is_string());

    assert_nic_wiring(&requests, "az1", "westus2");

    let vm = put_body(&requests, "/virtualMachines/az1");
    let p = &vm["properties"];
    assert_eq!(vm["location"], "westus2");
    assert_eq!(p["hardwareProfile"]["vmSize"], "Standard_B2s");
    assert_eq!(
        p["storageProfile"]["imageReference"]["publisher"],
        "Canonical"
    );
    assert_eq!(p["storageProfile"]["osDisk"]["createOption"], "FromImage");
    let os = &p["osProfile"];
    assert_eq!(os["adminUsername"], "azureuser");
    assert!(os.get("adminPassword").is_none(), "{os}");
    assert_eq!(
        os["linuxConfiguration"]["disablePasswordAuthentication"],
        true
    );
    // The key azlin made in this home is the one the VM trusts.
    let public_key = std::fs::read_to_string(env.azlin.key().with_extension("pub")).unwrap();
    assert_eq!(
        os["linuxConfiguration"]["ssh"]["publicKeys"][0]["keyData"],
        public_key.trim()
    );
    // customData is base64 of azlin's cloud-config: "I2Nsb3VkLWNvbmZp" is "#cloud-confi".
    assert!(
        os["customData"]
            .as_str()
            .unwrap()
            .starts_with("I2Nsb3VkLWNvbmZp"),
        "{}",
        os["customData"]
    );
    assert!(
        p["networkProfile"]["networkInterfaces"][0]["id"]
            .as_str()
            .unwrap()
            .ends_with("/networkInterfaces/az1-nic")
    );
    let request_id = vm["tags"]["azlin-request"].as_str().unwrap();
    assert!(!request_id.is_empty());
    assert_tags_on_vm_resources(
        &requests,
        "az1",
        &[
            ("azlin-managed", "true"),
            ("azlin-vm", "az1"),
            ("azlin-request", request_id),
        ],
    );
    // The address Azure gave is a documentation one, and it is what azlin waited on.
    let address = vm["tags"]["azlin-ip"].as_str().unwrap();
    assert!(in_double_range(address), "{address}");
    assert!(new.stderr.contains(address), "{}", new.stderr);

    // list: one ARM request, az1 running at its address.
    env.double.clear_requests();
    let rows = env.list();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["name"], "az1");
    assert_eq!(rows[0]["provider"], "azure");
    assert_eq!(rows[0]["state"], "running");
    assert_eq!(rows[0]["address"], address);
    let listed = env.double.requests();
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0].method, "GET");
    assert!(listed[0].path_ends_with("/providers/Microsoft.Compute/virtualMachines"));

    // delete: everything azlin made goes, the VM's OS disk, the shared VNet and the group too.
    env.run(&["delete", "az1", "--yes"]).expect(0);
    assert_eq!(env.azlin_leftovers(), Vec::<String>::new());
    assert!(env.list().is_empty());
}

#[test]
fn a_failed_vm_create_removes_what_it_made_and_exits_4() {
    let env = AzureEnv::start(AzState::LoggedIn);
    // A provisioning failure is retried (3 attempts, each cleaned up first): fail them all.
    for _ in 0..3 {
        env.double.inject(Fault::FailVmCreate {
            code: "AllocationFailed".into(),
            message: "Allocation failed. We do not have sufficient capacity for the requested VM size in this region.".into(),
        });
    }
    let run = env.new_vm("az2").expect(4);
    assert_mentions(
        &run.stderr,
        &["sufficient capacity", "failed after 3 attempts"],
    );
    let vm_puts = env
        .double
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path_ends_with("/virtualMachines/az2"))
        .count();
    assert_eq!(vm_puts, 3);
    // What each attempt made is removed again.
    assert_mentions(
        &run.stderr,
        &[
            "network interface az2-nic",
            "public IP address az2-ip",
            "network security group az2-nsg",
        ],
    );
    assert_eq!(env.azlin_leftovers(), Vec::<String>::new());
    assert!(env.list().is_empty());
}

#[test]
fn a_create_refused_after_resources_were_made_exits_4_with_what_was_removed() {
    let env = AzureEnv::start(AzState::LoggedIn);
    // A role that may write networks but not VMs: refused, cleaned up, and not tried again
    // (another attempt would meet the same refusal).
    env.double.inject(Fault::RejectVmCreate {
        status: 403,
        code: "AuthorizationFailed".into(),
        message: "The client does not have authorization to perform action 'Microsoft.Compute/virtualMachines/write'.".into(),
    });
    let run = env.new_vm("az7").expect(4);
    let vm_puts = env
        .double
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.ends_with("/virtualMachines/az7"))
        .count();
    assert_eq!(vm_puts, 1, "a refused permission was retried");
    assert_mentions(
        &run.stderr,
        &[
            "AuthorizationFailed",
            "cleaned up: removed",
            "network interface az7-nic",
            "public IP address az7-ip",
            "network security group az7-nsg",
        ],
    );
    assert_eq!(env.azlin_leftovers(), Vec::<String>::new());
}

#[test]
fn only_the_configured_source_may_reach_ssh() {
    let env = AzureEnv::start(AzState::LoggedIn);
    env.config_azure(&format!(
        "endpoint = \"{}\"\nssh_source_prefix = \"198.51.100.7/32\"",
        env.double.endpoint()
    ));
    let new = env.new_vm("az8").expect(5);
    let nsg = put_body(&env.double.requests(), "/networkSecurityGroups/az8-nsg").clone();
    assert_eq!(
        nsg["properties"]["securityRules"][0]["properties"]["sourceAddressPrefix"],
        "198.51.100.7/32"
    );
    assert!(
        !new.stderr.contains("open to any address"),
        "{}",
        new.stderr
    );
}

#[test]
fn a_plain_http_endpoint_off_loopback_is_refused_and_nothing_is_sent() {
    let env = AzureEnv::start(AzState::LoggedIn);
    env.config_azure("endpoint = \"http://management.azure.com\"");
    let run = env.new_vm("az9").expect(64);
    assert_mentions(
        &run.stderr,
        &["http://management.azure.com", "https://", "loopback"],
    );
    // Listing that provider by name says why it cannot be used, rather than "no VMs".
    let list = env.run(&["list", "--provider", "azure"]).expect(64);
    assert_mentions(&list.stderr, &["http://management.azure.com", "loopback"]);
    assert!(env.az.calls().is_empty(), "{:?}", env.az.calls());
    assert_eq!(env.double.request_count(), 0);
}

#[test]
fn missing_az_exits_2_with_how_to_install_it_and_sends_nothing() {
    let env = AzureEnv::start(AzState::Missing);
    let run = env.new_vm("az3").expect(2);
    assert_mentions(&run.stderr, &["az (", "install the Azure CLI"]);
    let doctor = env.run(&["doctor", "--provider", "azure"]).expect(2);
    assert!(doctor.stdout.contains("✗ az"), "{}", doctor.stdout);
    env.run(&["list", "--provider", "azure"]).expect(2);
    assert_eq!(env.double.request_count(), 0);
    assert!(env.az.calls().is_empty());
}

#[test]
fn logged_out_az_exits_3_with_az_login_and_sends_nothing() {
    let env = AzureEnv::start(AzState::LoggedOut);
    let run = env.new_vm("az4").expect(3);
    assert!(run.stderr.contains("az login"), "{}", run.stderr);
    let list = env.run(&["list", "--provider", "azure"]).expect(3);
    assert!(list.stderr.contains("az login"), "{}", list.stderr);
    assert_eq!(env.double.request_count(), 0);
    assert!(
        !env.azlin.key().exists(),
        "no SSH key is made before authentication succeeds"
    );
}

#[test]
fn doctor_lists_az_for_the_azure_provider() {
    let env = AzureEnv::start(AzState::LoggedIn);
    let doctor = env
        .run(&["doctor", "--provider", "azure", "-o", "json"])
        .expect(0)
        .json();
    assert_eq!(doctor["provider"], "azure");
    let az = doctor["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["program"] == "az")
        .unwrap_or_else(|| panic!("az is listed: {doctor}"));
    assert_eq!(az["found"], true);
    assert_eq!(
        az["path"].as_str().map(PathBuf::from),
        Some(env.az.program())
    );
    assert!(
        az["version"].as_str().unwrap().starts_with("azure-cli"),
        "{az}"
    );
}

#[test]
fn the_subscription_flag_wins_over_the_config() {
    let env = AzureEnv::start(AzState::LoggedIn);
    let theirs = "00000000-0000-0000-0000-000000000001";
    env.azlin.config(&format!(
        "[azure]\nendpoint = \"{}\"\nsubscription = \"{theirs}\"\n",
        env.double.endpoint()
    ));
    // The config's subscription is not one az knows: az refuses it, nothing is sent.
    let run = env.run(&["list", "--provider", "azure"]).expect(3);
    assert!(run.stderr.contains(theirs), "{}", run.stderr);
    assert_eq!(env.double.request_count(), 0);

    let ours = env.double.subscription_id().to_string();
    let calls_before = env.az.calls().len();
    let rows = env
        .run(&[
            "--subscription",
            &ours,
            "list",
            "--provider",
            "azure",
            "-o",
            "json",
        ])
        .expect(0)
        .json();
    assert_eq!(rows, serde_json::json!([]));
    let requests = env.double.requests();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0]
            .path
            .starts_with(&format!("/subscriptions/{ours}/")),
        "{:?}",
        requests[0]
    );
    // Both az commands were asked for the flag's subscription.
    let calls = env.az.calls();
    assert!(calls.len() > calls_before, "{calls:?}");
    assert!(
        calls[calls_before..]
            .iter()
            .all(|c| c.contains(&format!("--subscription {ours}"))),
        "{calls:?}"
    );

    env.double.clear_requests();
    let bad = env
        .new_vm_with(&["--subscription", "my sub"], "az6")
        .expect(64);
    assert_mentions(&bad.stderr, &["invalid Azure subscription id"]);
    assert_eq!(env.double.request_count(), 0);
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let ty = entry.file_type().unwrap();
            if ty.is_dir() {
                todo.push(entry.path());
            } else if ty.is_file() {
                out.push(entry.path());
            }
        }
    }
    out
}

#[test]
fn the_access_token_appears_in_no_output_log_or_file() {
    let env = AzureEnv::start(AzState::LoggedIn);
    let token = env.double.token().to_string();
    // Its random part, in case something printed it cut or re-encoded.
    let tail = token.rsplit('.').next().unwrap().to_string();
    let runs = [
        env.new_vm_with(&["-vvv"], "az5").expect(5),
        env.run(&["-vvv", "list", "--provider", "azure", "-o", "json"])
            .expect(0),
        env.run(&["-vvv", "status", "az5"]).expect(0),
        env.run(&["-vvv", "delete", "az5", "--yes"]).expect(0),
    ];
    // The token was used (the double accepts no other), and the logs are the verbose ones.
    assert!(
        env.double
            .requests()
            .iter()
            .any(|r| r.method == "PUT" && r.status == 201)
    );
    assert!(runs[0].stderr.contains("TRACE"), "{}", runs[0].stderr);
    for run in &runs {
        for text in [&run.stdout, &run.stderr] {
            assert!(!text.contains(&token) && !text.contains(&tail), "{text}");
        }
    }
    let files = files_under(env.azlin.home.path());
    assert!(
        files.iter().any(|f| f.ends_with("state.db")),
        "the state store is among the files checked: {files:?}"
    );
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(&token) && !text.contains(&tail),
            "{} holds the token",
            file.display()
        );
    }
}

#[test]
fn listing_50_azure_vms_is_one_arm_request() {
    let env = AzureEnv::start(AzState::LoggedIn);
    for n in 0..50 {
        let tags = tags(n);
        env.double
            .insert_vm("azlin", &tags["azlin-vm"], "westus2", &tags);
    }
    let rows = env.list();
    assert_eq!(rows.len(), 50);
    assert!(
        rows.iter()
            .all(|r| r["provider"] == "azure" && r["state"] == "running")
    );
    assert_eq!(rows[7]["name"], "fleet-07");
    assert_eq!(rows[7]["address"], "127.100.0.8");
    assert_eq!(
        env.double.request_count(),
        1,
        "{:#?}",
        env.double.requests()
    );
}

#[test]
fn ssh_open_to_anywhere_needs_a_prefix_or_the_flag_and_nothing_is_made_without() {
    let env = AzureEnv::start(AzState::LoggedIn);
    let new = env
        .run(&[
            "new",
            "--provider",
            "azure",
            "--name",
            "open",
            "--no-connect",
        ])
        .expect(64);
    assert_mentions(
        &new.stderr,
        &["ssh_source_prefix", "[azure]", "--allow-ssh-from-anywhere"],
    );
    assert_eq!(env.double.request_count(), 0, "nothing was sent to ARM");
    assert!(env.azlin_leftovers().is_empty());
    assert!(env.list().is_empty());
    // With a prefix, no flag is needed (the VM is made; it never answers SSH: exit 5).
    env.config_azure(&format!(
        "endpoint = \"{}\"\nssh_source_prefix = \"198.51.100.7/32\"",
        env.double.endpoint()
    ));
    env.run(&[
        "new",
        "--provider",
        "azure",
        "--name",
        "open",
        "--no-connect",
    ])
    .expect(5);
}

#[test]
fn connect_trusts_the_address_and_host_key_recorded_at_creation_not_the_tags() {
    let env = AzureEnv::start(AzState::LoggedIn);
    env.new_vm("trust").expect(5);
    let listed = env.list();
    let address = listed[0]["address"].as_str().unwrap().to_string();
    assert!(in_double_range(&address), "{address}");
    let vm = put_body(&env.double.requests(), "/virtualMachines/trust").clone();
    let key = vm["tags"]["azlin-host-key"].as_str().unwrap().to_string();
    // Someone allowed to tag the VM points azlin at another machine with another key.
    let forged_key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZvcmdlZC1mb3JnZWQtZm9yZ2VkLWZvcmdlZC1mbw";
    assert_eq!(
        env.double
            .set_tag("/virtualMachines/trust", "azlin-host-key", forged_key),
        1
    );
    assert_eq!(
        env.double
            .set_tag("/virtualMachines/trust", "azlin-ip", "127.100.0.250"),
        1
    );

    // Nothing answers SSH on the double's addresses: ssh fails (exit 5), after azlin wrote the
    // host key it checks against.
    let connect = env.run(&["connect", "trust", "--", "true"]);
    assert_ne!(connect.code, 0, "{}", connect.stderr);
    let known_hosts = env
        .azlin
        .home
        .path()
        .join(".local/state/azlin/known_hosts.d/trust");
    let known = std::fs::read_to_string(&known_hosts).unwrap();
    assert!(
        !known.contains("Zm9yZ2Vk"),
        "the forged key is trusted:\n{known}"
    );
    assert!(
        !known.contains("127.100.0.250"),
        "the forged address is used:\n{known}"
    );
    let recorded_base64 = key.split_whitespace().nth(1).unwrap();
    assert!(known.contains(recorded_base64), "{known}");
    assert!(known.contains(&address), "{known}");
}

/// `azlin cleanup` finds the NIC, IP, NSG and disk of an Azure VM that is gone (here: its VM
/// resource vanished, as when a delete is cut short), lists them with `--dry-run`, removes them
/// (and the shared network with the last of them), and leaves a resource azlin did not make.
#[test]
fn cleanup_removes_azure_resources_whose_vm_is_gone_and_nothing_else() {
    let env = AzureEnv::start(AzState::LoggedIn);
    env.new_vm("az-orphan").expect(5);
    env.new_vm("az-kept").expect(5);
    let theirs = env
        .double
        .insert_disk("azlin", "their-disk", "westus2", &BTreeMap::new(), None);
    assert_eq!(env.double.drop_resources("/virtualMachines/az-orphan"), 1);
    let dry = env
        .azlin
        .run(&["cleanup", "--dry-run", "-o", "json"])
        .expect(0)
        .json();
    let listed = dry.to_string();
    assert!(listed.contains("VM 'az-orphan'"), "{listed}");
    assert!(!listed.contains("az-kept"), "{listed}");
    assert!(
        env.double
            .azlin_resources()
            .iter()
            .any(|id| id.ends_with("/networkInterfaces/az-orphan-nic")),
        "the dry run removed something"
    );

    let done = env.azlin.run(&["cleanup", "-o", "json"]).expect(0).json();
    let removed = done.to_string();
    for part in ["az-orphan-nic", "az-orphan-ip", "az-orphan-nsg"] {
        assert!(removed.contains(part), "{part} not in {removed}");
    }
    let left = env.double.azlin_resources();
    assert!(
        !left.iter().any(|id| id.contains("az-orphan")),
        "left: {left:?}"
    );
    assert!(
        left.iter()
            .any(|id| id.ends_with("/virtualMachines/az-kept")),
        "{left:?}"
    );
    assert!(
        env.double.resources().iter().any(|r| r.id == theirs),
        "a resource azlin did not make was removed"
    );
    // Nothing more to do.
    let again = env.azlin.run(&["cleanup", "-o", "json"]).expect(0).json();
    assert!(!again.to_string().contains("az-orphan"), "{again}");
}
