//! What `GET /metrics` shows, in Prometheus' text format (prometheus-client): deliveries, runs
//! by result, the run queue, job-start latency, VM boot times, pools and runners.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    event: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

/// The service's metrics.
pub struct Metrics {
    registry: Registry,
    deliveries: Family<DeliveryLabels, Counter>,
    runs_queued: Counter,
    runs: Family<ResultLabels, Counter>,
    queue_depth: Gauge,
    runners: Gauge,
    pool_ready: Family<PoolLabels, Gauge>,
    job_start: Histogram,
    vm_boot: Histogram,
    pool_allocation: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("azlin");
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries by event and outcome (queued, duplicate, ignored, refused)",
            deliveries.clone(),
        );
        let runs_queued = Counter::default();
        registry.register(
            "runs_queued",
            "Workflow runs queued for a runner",
            runs_queued.clone(),
        );
        let runs = Family::<ResultLabels, Counter>::default();
        registry.register("runs", "Workflow runs ended, by result", runs.clone());
        let queue_depth = Gauge::default();
        registry.register(
            "run_queue_depth",
            "Workflow runs waiting for a runner or held by one",
            queue_depth.clone(),
        );
        let runners = Gauge::default();
        registry.register("runners", "Runner workers alive", runners.clone());
        let pool_ready = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "pool_ready_vms",
            "Warm pool VMs ready to be taken",
            pool_ready.clone(),
        );
        let seconds = || Histogram::new(exponential_buckets(0.05, 2.0, 14));
        let job_start = seconds();
        registry.register(
            "job_start_latency_seconds",
            "From the webhook's arrival to the job's first step",
            job_start.clone(),
        );
        let vm_boot = seconds();
        registry.register(
            "vm_boot_seconds",
            "From a VM's create request to a VM ready for work",
            vm_boot.clone(),
        );
        let pool_allocation = seconds();
        registry.register(
            "pool_allocation_seconds",
            "Time to hand a workflow session its VM",
            pool_allocation.clone(),
        );
        Metrics {
            registry,
            deliveries,
            runs_queued,
            runs,
            queue_depth,
            runners,
            pool_ready,
            job_start,
            vm_boot,
            pool_allocation,
        }
    }

    /// A delivery of `event` was answered with `outcome`.
    pub fn delivery(&self, event: &str, outcome: &str) {
        let event = if crate::webhook::EVENTS.contains(&event) {
            event
        } else {
            "other"
        };
        self.deliveries
            .get_or_create(&DeliveryLabels {
                event: event.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// A run was queued.
    pub fn run_queued(&self) {
        self.runs_queued.inc();
    }

    /// A run ended with `result`.
    pub fn run_ended(&self, result: &str) {
        self.runs
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
    }

    /// A job's first step started `latency` after its webhook arrived.
    pub fn job_started(&self, latency: Duration) {
        self.job_start.observe(latency.as_secs_f64());
    }

    /// A VM became ready after `took`.
    pub fn vm_booted(&self, took: Duration) {
        self.vm_boot.observe(took.as_secs_f64());
    }

    /// A session got its VM after `took`.
    pub fn vm_allocated(&self, took: Duration) {
        self.pool_allocation.observe(took.as_secs_f64());
    }

    /// The gauges read at scrape time.
    pub fn set_gauges(&self, queue_depth: u64, runners: usize, pools: &[(String, usize)]) {
        self.queue_depth
            .set(i64::try_from(queue_depth).unwrap_or(i64::MAX));
        self.runners.set(i64::try_from(runners).unwrap_or(i64::MAX));
        for (pool, ready) in pools {
            self.pool_ready
                .get_or_create(&PoolLabels { pool: pool.clone() })
                .set(i64::try_from(*ready).unwrap_or(i64::MAX));
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!("encoding metrics: {e}");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_show_in_the_text_format() {
        let metrics = Metrics::new();
        metrics.delivery("push", "queued");
        metrics.delivery("issues", "ignored");
        metrics.run_ended("success");
        metrics.run_ended("success");
        metrics.job_started(Duration::from_millis(300));
        metrics.set_gauges(3, 2, &[("ci".into(), 1)]);
        let text = metrics.encode();
        for line in [
            "azlin_webhook_deliveries_total{event=\"push\",outcome=\"queued\"} 1",
            "azlin_webhook_deliveries_total{event=\"other\",outcome=\"ignored\"} 1",
            "azlin_runs_total{result=\"success\"} 2",
            "azlin_run_queue_depth 3",
            "azlin_runners 2",
            "azlin_pool_ready_vms{pool=\"ci\"} 1",
            "azlin_job_start_latency_seconds_count 1",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
