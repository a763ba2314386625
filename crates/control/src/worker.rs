//! The launch [`Worker`]: takes requests off the bus, at most `concurrency` at a time, runs them
//! through the [`Launcher`], retries retryable failures with backoff up to a bound, and moves
//! what cannot be processed to the dead letters. Shutting down stops taking requests and lets
//! the ones in flight finish; [`Worker::abandon`] gives them up instead, back to the bus for
//! another worker.

use crate::bus::{Acker, Bus, BusError, DeadLetter, Delivery};
use crate::launch::Launcher;
use azlin_core::event::{Event, Request, SCHEMA, Stage, Status};
use azlin_core::now_rfc3339;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// How a worker paces itself.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Requests processed at once.
    pub concurrency: usize,
    /// Attempts per request before it is given up (and dead-lettered).
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled for each further one.
    pub backoff: Duration,
    /// How often to tell the bus a long create is still in progress.
    pub progress_interval: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            concurrency: 4,
            max_attempts: 3,
            backoff: Duration::from_secs(1),
            progress_interval: Duration::from_secs(5),
        }
    }
}

/// A launch worker.
pub struct Worker {
    bus: Arc<dyn Bus>,
    launcher: Arc<Launcher>,
    settings: WorkerSettings,
    abandon: watch::Sender<bool>,
}

impl Worker {
    /// A worker taking requests from `bus`.
    pub fn new(bus: Arc<dyn Bus>, launcher: Arc<Launcher>, settings: WorkerSettings) -> Arc<Self> {
        Arc::new(Worker {
            bus,
            launcher,
            settings,
            abandon: watch::channel(false).0,
        })
    }

    /// Gives up the requests in flight: each is released (nak) to the bus at once, for another
    /// worker, and [`Worker::run`] returns as soon as they are. What they had made stays for
    /// the next worker to resume (providers find a VM by its request id). No further request is
    /// taken.
    pub fn abandon(&self) {
        self.abandon.send_replace(true);
    }

    /// Serves requests until `shutdown` turns true (or the worker is abandoned), then waits for
    /// the requests in flight.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) -> Result<(), BusError> {
        let permits = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let mut in_flight = JoinSet::new();
        let mut abandoned = self.abandon.subscribe();
        let outcome = loop {
            if *shutdown.borrow() || *abandoned.borrow_and_update() {
                break Ok(());
            }
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break Ok(()),
                },
                _ = shutdown.changed() => break Ok(()),
                _ = abandoned.changed() => break Ok(()),
            };
            let delivery = tokio::select! {
                delivery = self.bus.next_request() => match delivery {
                    Ok(delivery) => delivery,
                    Err(e) => break Err(e),
                },
                _ = shutdown.changed() => break Ok(()),
                _ = abandoned.changed() => break Ok(()),
            };
            let worker = self.clone();
            in_flight.spawn(async move {
                worker.handle(delivery).await;
                drop(permit);
            });
            while in_flight.try_join_next().is_some() {}
        };
        // Before waiting for the requests in flight: one released now goes to another worker.
        self.bus.stop_requests().await;
        while in_flight.join_next().await.is_some() {}
        outcome
    }

    /// Processes one delivery, unless the worker abandons it first (then it is released).
    async fn handle(&self, delivery: Delivery) {
        let mut abandoned = self.abandon.subscribe();
        if *abandoned.borrow_and_update() {
            release(&delivery).await;
            return;
        }
        tokio::select! {
            () = self.process(&delivery) => {}
            _ = abandoned.changed() => release(&delivery).await,
        }
    }

    /// Processes one delivery to the end: ack, nak for a retry, or dead letter. What cannot be
    /// settled (the bus failed) is released to be delivered again, after the backoff.
    async fn process(&self, delivery: &Delivery) {
        // Creates and deletes alike may outlast the ack wait: the bus hears that the request is
        // in progress until it is settled, so that it is not redelivered to another worker.
        let settled = keep_alive(
            delivery.acker.as_ref(),
            self.settings.progress_interval,
            self.settle(delivery),
        )
        .await;
        if let Err(e) = settled {
            tracing::warn!(subject = %delivery.subject, "could not settle a request: {e}");
            if let Err(e) = delivery.acker.nak(self.delay(delivery.attempt)).await {
                // Still unacknowledged: the bus redelivers it after its ack wait.
                tracing::warn!("could not release a request: {e}");
            }
        }
    }

    /// Performs the request of `delivery` and settles it; `Err` if the bus did not confirm the
    /// outcome (then nothing was acknowledged).
    async fn settle(&self, delivery: &Delivery) -> Result<(), BusError> {
        let request = match Request::decode(&delivery.subject, &delivery.payload) {
            Ok(request) => request,
            Err(e) => return self.give_up(delivery, e.to_string(), None).await,
        };
        // A redelivery of a request that has ended (its worker died before acknowledging it)
        // is settled without being redone.
        if delivery.attempt > 1 {
            match self.bus.ended(request.request_id()).await {
                Ok(true) => {
                    tracing::info!(request_id = %request.request_id(), "request already ended; acknowledging");
                    return delivery.acker.ack().await;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!("could not check whether the request ended: {e}"),
            }
        }
        match request {
            Request::Create(request) => {
                match self.launcher.create(&request, delivery.attempt).await {
                    Ok(complete) => self.finish(delivery, Event::CreateComplete(complete)).await,
                    Err(failure) if !failure.retryable() => {
                        self.finish(delivery, Event::CreateFailed(failure.event))
                            .await
                    }
                    Err(failure) if delivery.attempt < self.settings.max_attempts => {
                        self.retry(delivery, &failure.event).await
                    }
                    Err(failure) => {
                        let reason = format!(
                            "failed after {} attempts: {}",
                            delivery.attempt, failure.event.error.message
                        );
                        self.give_up(delivery, reason, Some(Event::CreateFailed(failure.event)))
                            .await
                    }
                }
            }
            Request::Delete(request) => {
                let event = self.launcher.delete(&request).await;
                self.finish(delivery, event).await
            }
        }
    }

    /// Publishes the terminal event of a delivery, then acknowledges it.
    async fn finish(&self, delivery: &Delivery, event: Event) -> Result<(), BusError> {
        self.bus.publish(&event).await?;
        delivery.acker.ack().await
    }

    /// How long a request waits before its next attempt: the backoff, doubled per attempt made.
    fn delay(&self, attempt: u32) -> Duration {
        self.settings
            .backoff
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
    }

    async fn retry(
        &self,
        delivery: &Delivery,
        failed: &azlin_core::event::CreateFailed,
    ) -> Result<(), BusError> {
        let delay = self.delay(delivery.attempt);
        let status = Status {
            schema: SCHEMA,
            request_id: failed.request_id.clone(),
            name: failed.name.clone(),
            stage: Stage::Retrying,
            message: format!(
                "attempt {} of {} failed ({}); retrying in {}s",
                delivery.attempt,
                self.settings.max_attempts,
                failed.error.message,
                delay.as_secs_f32()
            ),
            attempt: delivery.attempt,
            worker: self.launcher.worker_id().to_string(),
            at: now_rfc3339(),
            warning: true,
        };
        self.bus.publish(&Event::CreateStatus(status)).await?;
        delivery.acker.nak(delay).await
    }

    /// Moves a delivery to the dead letters, publishes its terminal event (`ending`, when the
    /// request could be read), and only then acknowledges it, so that it is never redelivered.
    ///
    /// The terminal event comes last because it ends the request for everyone (followers stop
    /// waiting, a redelivery is acknowledged unseen): if it were published first and the dead
    /// letter failed, the letter would be lost. If any step fails, nothing is acknowledged and
    /// the caller releases the delivery, so the give-up is tried again — a dead letter written
    /// before such a failure may then be written twice (with the later attempt count).
    async fn give_up(
        &self,
        delivery: &Delivery,
        reason: String,
        ending: Option<Event>,
    ) -> Result<(), BusError> {
        let letter = DeadLetter {
            subject: delivery.subject.clone(),
            payload: String::from_utf8_lossy(&delivery.payload).into_owned(),
            reason,
            attempts: delivery.attempt,
            at: now_rfc3339(),
        };
        self.bus.dead_letter(letter).await?;
        if let Some(event) = ending {
            self.bus.publish(&event).await?;
        }
        delivery.acker.ack().await
    }
}

/// Hands a delivery back to the bus for another worker, at once.
async fn release(delivery: &Delivery) {
    tracing::warn!(subject = %delivery.subject, attempt = delivery.attempt, "abandoning a request in flight");
    if let Err(e) = delivery.acker.nak(Duration::ZERO).await {
        tracing::warn!("could not release a request: {e}");
    }
}

/// Runs `work`, telling the bus every `interval` that it is still in progress.
async fn keep_alive<T>(acker: &dyn Acker, interval: Duration, work: impl Future<Output = T>) -> T {
    tokio::pin!(work);
    // The first tick is one interval away: an interval's immediate first tick would still wait
    // for the timer wheel (about a millisecond), which a fast launch would pay every time.
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = ticker.tick() => {
                if let Err(e) = acker.in_progress().await {
                    tracing::warn!("could not report progress: {e}");
                }
            }
        }
    }
}
