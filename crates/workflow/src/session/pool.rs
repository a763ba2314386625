//! [`PoolAllocator`]: session VMs taken from the warm pool whose labels match the job's
//! `runs-on`, booted cold (through the control plane, like [`LaunchAllocator`]) when no pool
//! serves the job or the pool has no ready VM. A VM taken is single-use: the session's release
//! deletes it, and the pool is refilled in the background (after the take, and again after the
//! release frees its room under `max`), never while the session waits.

use super::allocator::{AllocError, Allocation, AllocationRequest, Allocator, VmOrigin};
use super::launch::LaunchAllocator;
use async_trait::async_trait;
use azlin_control::Pools;
use azlin_core::ErrorKind;
use azlin_core::config::PoolConfig;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Starts refilling a pool without waiting for it (the CLI starts a detached `pool fill`).
pub type Refill = dyn Fn(&str) + Send + Sync;

/// Allocates from warm pools, falling back to cold boots.
pub struct PoolAllocator {
    cold: LaunchAllocator,
    pools: Pools,
    configs: BTreeMap<String, PoolConfig>,
    refill: Arc<Refill>,
}

impl PoolAllocator {
    /// Takes VMs of the pools in `configs` through `pools`, boots cold with `cold`, and calls
    /// `refill` with a pool's name after taking from it (or finding it empty).
    pub fn new(
        cold: LaunchAllocator,
        pools: Pools,
        configs: BTreeMap<String, PoolConfig>,
        refill: Arc<Refill>,
    ) -> Self {
        PoolAllocator {
            cold,
            pools,
            configs,
            refill,
        }
    }

    /// The first pool (by name) whose labels hold every label of `runs_on`.
    pub fn pool_for(&self, runs_on: &[String]) -> Option<&str> {
        self.configs
            .iter()
            .find(|(_, pool)| !runs_on.is_empty() && pool.serves(runs_on))
            .map(|(name, _)| name.as_str())
    }
}

#[async_trait]
impl Allocator for PoolAllocator {
    async fn allocate(&self, request: &AllocationRequest) -> Result<Allocation, AllocError> {
        let Some(pool) = self.pool_for(&request.runs_on) else {
            return self.cold.allocate(request).await;
        };
        let claiming = std::time::Instant::now();
        let taken = self
            .pools
            .take(pool, &request.session_id, false)
            .await
            .map_err(|e| AllocError::new(ErrorKind::Transient, e.to_string()))?;
        let claim_us = u64::try_from(claiming.elapsed().as_micros()).unwrap_or(u64::MAX);
        match taken {
            Some(record) => {
                let origin = VmOrigin::Pool {
                    pool: pool.to_string(),
                    claim_us,
                };
                let adopted = self.cold.adopt(record.to_vm(), origin).await;
                // Started once the session has its VM: starting a process is not the session's
                // wait.
                (self.refill)(pool);
                adopted
            }
            None => {
                // Started before the cold boot, so the pool fills while this session waits.
                (self.refill)(pool);
                let mut allocation = self.cold.allocate(request).await?;
                allocation.origin = VmOrigin::PoolEmpty {
                    pool: pool.to_string(),
                };
                Ok(allocation)
            }
        }
    }

    async fn release(&self, allocation: &Allocation) -> Result<(), AllocError> {
        let released = self.cold.release(allocation).await;
        // The VM counted against the pool's `max` until now: the replacement may need this
        // room (a refill started at the take may have found none).
        if let VmOrigin::Pool { pool, .. } = &allocation.origin {
            (self.refill)(pool);
        }
        released
    }
}
