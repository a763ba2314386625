//! Load for `bench/serve.sh`: signed `push` deliveries posted to `azlin serve` as fast as it takes
//! them, `CONCURRENCY` at a time over kept-alive connections, and the same load of `GET /healthz`
//! (the server's HTTP floor) for comparison. Prints one JSON line of results.
//!
//! webhook_load URL DELIVERIES CONCURRENCY SECRET_FILE BODY_FILE [REPLAY_PERCENT]

use azlin_ci::webhook::sign;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [
        _,
        url,
        deliveries,
        concurrency,
        secret_file,
        body_file,
        rest @ ..,
    ] = args.as_slice()
    else {
        return Err(
            "usage: webhook_load URL DELIVERIES CONCURRENCY SECRET_FILE BODY_FILE [REPLAY_PERCENT]"
                .into(),
        );
    };
    let deliveries: usize = deliveries.parse()?;
    let concurrency: usize = concurrency.parse()?;
    let replay_percent: usize = rest.first().map_or(Ok(0), |p| p.parse())?;
    let secret = std::fs::read_to_string(secret_file)?.trim().to_string();
    let body = std::fs::read(body_file)?;
    let signature = sign(secret.as_bytes(), &body);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let url = url.trim_end_matches('/').to_string();

    let healthz = run(concurrency, deliveries, {
        let (client, url) = (client.clone(), url.clone());
        move |_| {
            let request = client.get(format!("{url}/healthz"));
            async move { request.send().await.map(|r| r.status().as_u16()) }
        }
    })
    .await;
    let run_tag = azlin_core::new_id();
    let webhooks = run(concurrency, deliveries, {
        let body = Arc::new(body);
        move |i| {
            // Every REPLAY_PERCENT-th delivery is one sent before: de-duplicated, not queued.
            let id = match replay_percent {
                p if p > 0 && i % (100 / p.min(100)) == 1 => format!("{run_tag}-{}", i - 1),
                _ => format!("{run_tag}-{i}"),
            };
            let request = client
                .post(format!("{url}/webhook"))
                .header("X-GitHub-Event", "push")
                .header("X-GitHub-Delivery", id)
                .header("X-Hub-Signature-256", signature.as_str())
                .header("Content-Type", "application/json")
                .body(body.as_ref().clone());
            async move { request.send().await.map(|r| r.status().as_u16()) }
        }
    })
    .await;
    println!(
        "{}",
        serde_json::json!({
            "deliveries": deliveries,
            "concurrency": concurrency,
            "webhooks_per_s": webhooks.per_second,
            "webhook_statuses": webhooks.statuses,
            "healthz_per_s": healthz.per_second,
        })
    );
    Ok(())
}

struct Outcome {
    per_second: f64,
    statuses: std::collections::BTreeMap<u16, usize>,
}

/// Sends `total` requests made by `make(i)`, `concurrency` at a time.
async fn run<F, Fut>(concurrency: usize, total: usize, make: F) -> Outcome
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<u16, reqwest::Error>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let make = Arc::new(make);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (next, make) = (next.clone(), make.clone());
        tasks.spawn(async move {
            let mut statuses = std::collections::BTreeMap::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return statuses;
                }
                let status = make(i).await.unwrap_or(0);
                *statuses.entry(status).or_insert(0) += 1;
            }
        });
    }
    let mut statuses = std::collections::BTreeMap::new();
    while let Some(Ok(part)) = tasks.join_next().await {
        for (status, n) in part {
            *statuses.entry(status).or_insert(0) += n;
        }
    }
    Outcome {
        per_second: total as f64 / started.elapsed().as_secs_f64(),
        statuses,
    }
}
