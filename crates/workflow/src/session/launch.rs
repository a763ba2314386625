//! [`LaunchAllocator`]: session VMs through the control plane — the same launch path as
//! `azlin new` (a `vm.create.request` on the bus, a worker that provisions and waits for SSH and
//! cloud-init), released with a `vm.delete.request`.

use super::allocator::{AllocError, Allocation, AllocationRequest, Allocator, VmOrigin};
use async_trait::async_trait;
use azlin_control::{Bus, Orchestrator};
use azlin_core::event::{CreateRequested, DeleteRequested, Event, Request, SCHEMA};
use azlin_core::{ErrorKind, Vm, VmSpec, VmState, cloudinit, new_id, now_rfc3339};
use azlin_remote::Identity;
use std::sync::Arc;

/// Allocates session VMs by submitting launch requests and following their events.
pub struct LaunchAllocator {
    bus: Arc<dyn Bus>,
    orchestrator: Orchestrator,
    identity: Identity,
    template: VmSpec,
    requested_by: String,
    root_login: bool,
}

impl LaunchAllocator {
    /// Session VMs like `template` (its name is replaced per session), reached with `identity`.
    /// With `root_login`, the session logs in as root (its key authorised for root through
    /// cloud-init), so steps that run as root need no `sudo` each.
    pub fn new(
        bus: Arc<dyn Bus>,
        orchestrator: Orchestrator,
        identity: Identity,
        template: VmSpec,
        requested_by: String,
        root_login: bool,
    ) -> Result<Self, AllocError> {
        let mut template = template;
        if root_login {
            let extra = cloudinit::root_login(&identity.public_openssh);
            template.cloud_init = Some(
                cloudinit::merge_documents(template.cloud_init.as_deref(), &extra)
                    .map_err(|e| AllocError::new(ErrorKind::Usage, e.to_string()))?,
            );
        }
        Ok(LaunchAllocator {
            bus,
            orchestrator,
            identity,
            template,
            requested_by,
            root_login,
        })
    }

    /// Submits `request` and follows it to its terminal event.
    async fn settle(&self, request: Request) -> Result<Event, AllocError> {
        self.orchestrator
            .settle(self.bus.as_ref(), std::slice::from_ref(&request))
            .await
            .map_err(|e| AllocError::new(ErrorKind::Transient, e.to_string()))?
            .into_values()
            .next()
            .ok_or_else(|| {
                AllocError::new(
                    ErrorKind::Internal,
                    "the control plane stopped before the request ended",
                )
            })
    }
}

#[async_trait]
impl Allocator for LaunchAllocator {
    async fn allocate(&self, request: &AllocationRequest) -> Result<Allocation, AllocError> {
        let mut spec = self.template.clone();
        spec.name = request.vm_name()?;
        spec.tags
            .insert("azlin-session".into(), request.session_id.clone());
        spec.tags
            .insert("azlin-workflow".into(), request.label.clone());
        let create = Request::Create(CreateRequested {
            schema: SCHEMA,
            request_id: request.session_id.clone(),
            spec,
            ssh_public_key: self.identity.public_openssh.clone(),
            requested_by: self.requested_by.clone(),
            created_at: now_rfc3339(),
        });
        let complete = match self.settle(create).await? {
            Event::CreateComplete(complete) => complete,
            Event::CreateFailed(failed) => {
                return Err(AllocError::new(failed.error.kind, failed.error.message));
            }
            other => {
                return Err(AllocError::new(
                    ErrorKind::Internal,
                    format!("unexpected {}", other.subject()),
                ));
            }
        };
        let vm = Vm {
            name: complete.vm.name,
            provider: complete.vm.provider,
            state: VmState::Running,
            address: complete.vm.address,
            ssh_port: complete.vm.ssh_port,
            user: complete.vm.user,
            host_key: complete.vm.host_key,
            request_id: complete.request_id,
            details: complete.details,
        };
        self.adopt(vm, VmOrigin::Booted).await
    }

    async fn release(&self, allocation: &Allocation) -> Result<(), AllocError> {
        self.release_vm(&allocation.vm).await
    }
}

impl LaunchAllocator {
    /// Makes a running VM (booted for the session, or taken from a pool) the session's: logs in
    /// (as root with root login). A VM that cannot be reached is released at once.
    pub async fn adopt(&self, mut vm: Vm, origin: VmOrigin) -> Result<Allocation, AllocError> {
        if self.root_login {
            vm.user = "root".to_string();
        }
        match azlin_remote::connect(&vm, &self.identity).await {
            Ok(shell) => Ok(Allocation { vm, shell, origin }),
            Err(e) => {
                // A VM the session cannot reach is of no use: give it back at once.
                let allocation_error = AllocError::new(ErrorKind::Readiness, e.to_string());
                if let Err(error) = self.release_vm(&vm).await {
                    tracing::warn!(vm = %vm.name, %error, "an unreachable session VM could not be released");
                }
                Err(allocation_error)
            }
        }
    }

    async fn release_vm(&self, vm: &Vm) -> Result<(), AllocError> {
        let delete = Request::Delete(DeleteRequested {
            schema: SCHEMA,
            request_id: new_id(),
            name: vm.name.clone(),
            provider: vm.provider,
            requested_by: self.requested_by.clone(),
            created_at: now_rfc3339(),
        });
        match self.settle(delete).await? {
            Event::DeleteComplete(_) => Ok(()),
            Event::DeleteFailed(failed) => {
                Err(AllocError::new(failed.error.kind, failed.error.message))
            }
            other => Err(AllocError::new(
                ErrorKind::Internal,
                format!("unexpected {}", other.subject()),
            )),
        }
    }
}
