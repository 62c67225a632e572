//! Connecting: the options a client starts with, and a connect bounded by
//! the retry deadline.

use crate::{Backend, Client, Durability, Error, Result, RetryPolicy};
use std::time::{Duration, Instant};

/// How a [`Client`] connects and behaves: the retry policy (which also
/// bounds connecting), durability, the batch window. [`Client::standalone`]
/// and [`Client::cluster`] use the defaults.
///
/// ```no_run
/// # async fn demo() -> redis_inventory_client::Result<()> {
/// use redis_inventory_client::{Client, RetryPolicy};
/// use std::time::Duration;
/// let client = Client::builder()
///     .retry(RetryPolicy { deadline: Duration::from_secs(3), ..Default::default() })
///     .standalone("redis://127.0.0.1:6379/")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ClientBuilder {
    retry: RetryPolicy,
    durability: Option<Durability>,
    window: usize,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            retry: RetryPolicy::default(),
            durability: None,
            window: 256,
        }
    }
}

impl ClientBuilder {
    /// How idempotent commands are retried, and how long connecting may take.
    pub fn retry(mut self, retry: RetryPolicy) -> ClientBuilder {
        self.retry = retry;
        self
    }

    /// Wait for replicas after each write (see [`Client::with_durability`]).
    pub fn durability(mut self, durability: Durability) -> ClientBuilder {
        self.durability = Some(durability);
        self
    }

    /// How many commands a batch keeps in flight (default 256).
    pub fn window(mut self, window: usize) -> ClientBuilder {
        self.window = window.max(1);
        self
    }

    /// How long one attempt to connect or to get a reply may take: the
    /// retry deadline bounds the whole.
    fn attempt_timeout(&self) -> Duration {
        self.retry.deadline.min(Duration::from_secs(2))
    }

    /// Connects to one server, e.g. `redis://127.0.0.1:6379/`, retrying
    /// until the retry deadline while it cannot be reached; then a
    /// [`Error::Connection`]. A refused login is [`Error::NotAllowed`] at once.
    pub async fn standalone(self, url: &str) -> Result<Client> {
        let client = redis::Client::open(url).map_err(|e| Error::InvalidInput(e.to_string()))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(self.attempt_timeout())
            .set_response_timeout(self.attempt_timeout())
            .set_number_of_retries(0);
        let manager = self
            .connect(|| client.get_connection_manager_with_config(config.clone()))
            .await?;
        Ok(self.build(Backend::Standalone(manager)))
    }

    /// Connects to a Redis Cluster from one or more node URLs, retrying
    /// until the retry deadline as [`ClientBuilder::standalone`] does.
    pub async fn cluster(self, urls: &[&str]) -> Result<Client> {
        let client = redis::cluster::ClusterClient::builder(urls.to_vec())
            .retries(6)
            .min_retry_wait(10)
            .max_retry_wait(500)
            .connection_timeout(self.attempt_timeout())
            .response_timeout(self.attempt_timeout())
            .build()
            .map_err(|e| Error::InvalidInput(e.to_string()))?;
        let conn = self.connect(|| client.get_async_connection()).await?;
        Ok(self.build(Backend::Cluster(conn)))
    }

    /// Runs `attempt` until it connects, fails for good, or the deadline.
    async fn connect<T, F>(&self, mut attempt: impl FnMut() -> F) -> Result<T>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let started = Instant::now();
        let mut backoff = self.retry.initial_backoff;
        loop {
            let left = self.retry.deadline.saturating_sub(started.elapsed());
            let error = match tokio::time::timeout(left, attempt()).await {
                Ok(Ok(connection)) => return Ok(connection),
                Ok(Err(e)) => Error::from_redis(e),
                Err(_) => Error::Connection(redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("not connected within {:?}", self.retry.deadline),
                ))),
            };
            if !error.is_transient() || started.elapsed() + backoff >= self.retry.deadline {
                return Err(error);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.retry.max_backoff);
        }
    }

    fn build(self, backend: Backend) -> Client {
        Client {
            backend,
            retry: self.retry,
            durability: self.durability,
            window: self.window,
        }
    }
}
