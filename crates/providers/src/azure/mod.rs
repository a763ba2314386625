//! The `azure` provider: Azure VMs created through the Azure Resource Manager REST API
//! (reqwest + rustls), with credentials delegated to the Azure CLI.
//!
//! - `auth`: `az account show` / `az account get-access-token`; the token stays in memory.
//! - `arm`: the HTTP client: retries of 429/5xx honouring `Retry-After`, long-running
//!   operations through `Azure-AsyncOperation` or `Location`, ARM errors made actionable.
//! - `resources`: names, tags and request bodies of what one VM is made of.
//! - `provider`: the [`VmProvider`](azlin_core::VmProvider) implementation.
//!
//! Choices a user may notice:
//! - `list` is ONE call: `GET /subscriptions/{sub}/providers/Microsoft.Compute/virtualMachines
//!   ?statusOnly=true` (the subscription-wide list with power state), filtered on the
//!   `azlin-managed` tag. Public addresses are not part of that answer, so azlin tags each VM
//!   with its static address (`azlin-ip`) and SSH host key (`azlin-host-key`) when creating it.
//!   `get`, `start`, `stop` and `delete` find the VM (and its resource group) through it too.
//! - The NSG lets SSH in from `[azure] ssh_source_prefix` when configured; otherwise from
//!   anywhere (`*`), with a warning saying so (azlin asks no outside service for your address).
//! - `delete` removes the VM, then its NIC, public IP, NSG and OS disk, waiting for each. The
//!   virtual network is shared by the VMs of a resource group and region and is deleted with the
//!   last azlin resource of that region in the group; the resource group is deleted only if azlin
//!   created it (tag `azlin-managed`) and nothing at all is left in it. A failed create cleans up
//!   the same way and lists what it removed in `ProviderError::cleaned_up`.
//! - Resources that exist under azlin's names but lack azlin's tags are never deleted. The OS disk
//!   is deleted when it carries azlin's tags for the VM (set right after the VM is created) or
//!   when azlin's VM named it as its OS disk and it was attached to that VM; any other disk named
//!   `NAME-osdisk` is left alone.

pub(crate) mod arm;
pub(crate) mod auth;
pub(crate) mod provider;
pub(crate) mod resources;
pub mod settings;
mod snapshot;

pub use provider::AzureProvider;
pub use resources::MAX_CUSTOM_DATA_BYTES;
pub use settings::{AzureSettings, DEFAULT_ENDPOINT, DEFAULT_RESOURCE_GROUP, ImageRef};
