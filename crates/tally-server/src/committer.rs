//! Group commit: every accepted event goes through one task that writes whatever has
//! queued up since its last commit in a single transaction.
//!
//! A handler hands its events over and waits for the answer, so a 2xx is only sent once
//! its events are committed. Under load many requests share one transaction (and one
//! fsync); when idle a request is committed alone at once. After the commit, newly
//! stored events are published to live-stream subscribers; a slow subscriber only lags
//! its own broadcast receiver and never holds up this task.

use std::sync::Arc;

use tally_core::Event;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::AppError;
use crate::metrics::{CollectorMetrics, UsageSample};
use crate::storage::{Storage, StorageError};

/// Requests waiting for the committer; beyond this, handlers wait to enqueue.
const QUEUE_DEPTH: usize = 1024;

struct Job {
    events: Vec<Event>,
    reply: oneshot::Sender<Result<Vec<bool>, StorageError>>,
}

/// The handlers' end of the group-commit task.
#[derive(Clone)]
pub struct Committer {
    sender: mpsc::Sender<Job>,
}

impl Committer {
    /// Starts the task. It ends, after committing everything queued, once every
    /// `Committer` clone is dropped.
    pub fn start(
        store: Arc<dyn Storage>,
        max_events: usize,
        stream: broadcast::Sender<Arc<Event>>,
        metrics: Arc<CollectorMetrics>,
    ) -> (Committer, JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
        let task = tokio::spawn(run(store, receiver, max_events, stream, metrics));
        (Committer { sender }, task)
    }

    /// Commits `events`; returns, per event, whether it was newly stored.
    pub async fn commit(&self, events: Vec<Event>) -> Result<Vec<bool>, AppError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Job { events, reply })
            .await
            .map_err(|_| AppError::unavailable("the collector is shutting down"))?;
        answer
            .await
            .map_err(|_| AppError::unavailable("the commit task stopped"))?
            .map_err(AppError::from)
    }
}

async fn run(
    store: Arc<dyn Storage>,
    mut receiver: mpsc::Receiver<Job>,
    max_events: usize,
    stream: broadcast::Sender<Arc<Event>>,
    metrics: Arc<CollectorMetrics>,
) {
    while let Some(first) = receiver.recv().await {
        let mut queued = first.events.len();
        let mut jobs = vec![first];
        while queued < max_events {
            match receiver.try_recv() {
                Ok(job) => {
                    queued += job.events.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let mut sizes = Vec::with_capacity(jobs.len());
        let mut events = Vec::with_capacity(queued);
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            sizes.push(job.events.len());
            events.extend(job.events);
            replies.push(job.reply);
        }
        let published = (stream.receiver_count() > 0).then(|| events.clone());
        let usage: Vec<(usize, UsageSample)> = events
            .iter()
            .enumerate()
            .filter_map(|(index, event)| Some((index, UsageSample::of(event)?)))
            .collect();
        let result = store.insert(events).await;
        metrics.record_commit(queued);
        match result {
            Ok(stored) => {
                metrics.record_usage(
                    usage
                        .into_iter()
                        .filter(|(index, _)| stored.get(*index).copied().unwrap_or(false))
                        .map(|(_, sample)| sample),
                );
                if let Some(events) = published {
                    for (event, new) in events.into_iter().zip(&stored) {
                        if *new {
                            // No receiver left is fine: nobody is watching.
                            let _ = stream.send(Arc::new(event));
                        }
                    }
                }
                let mut rest = stored.as_slice();
                for (reply, size) in replies.into_iter().zip(sizes) {
                    let (mine, others) = rest.split_at(size.min(rest.len()));
                    rest = others;
                    // The handler may have gone (client disconnected); the events are
                    // committed either way.
                    let _ = reply.send(Ok(mine.to_vec()));
                }
            }
            Err(err) => {
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}
