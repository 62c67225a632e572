//! Connecting: the options a client starts with, and a connect bounded by
//! the retry deadline.

use crate::{Backend, Client, Error, Result};
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
    pub(crate) retry: RetryPolicy,
    pub(crate) durability: Option<Durability>,
    pub(crate) window: usize,
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
    pub(crate) fn attempt_timeout(&self) -> Duration {
        self.retry.deadline.min(Duration::from_secs(2))
    }

    /// Connects to one server, e.g. `redis://127.0.0.1:6379/` (or
    /// `rediss://` for TLS, checked against the system's root
    /// certificates), retrying until the retry deadline while it cannot be
    /// reached; then a [`Error::Connection`]. A refused login is
    /// [`Error::NotAllowed`] and a refused certificate [`Error::Tls`], at once.
    pub async fn standalone(self, url: &str) -> Result<Client> {
        let client = redis::Client::open(url).map_err(|e| Error::InvalidInput(e.to_string()))?;
        self.standalone_from(client).await
    }

    /// Connects through a `redis::Client` you configured yourself, e.g. one
    /// built with `redis::Client::build_with_tls` for a private CA or a
    /// client certificate; otherwise as [`ClientBuilder::standalone`].
    ///
    /// ```no_run
    /// # async fn demo(ca_pem: Vec<u8>) -> Result<(), Box<dyn std::error::Error>> {
    /// let tls = redis::TlsCertificates { client_tls: None, root_cert: Some(ca_pem) };
    /// let redis = redis::Client::build_with_tls("rediss://db.internal:6380/", tls)?;
    /// let client = redis_inventory_client::Client::builder().standalone_from(redis).await?;
    /// # Ok(()) }
    /// ```
    pub async fn standalone_from(self, client: redis::Client) -> Result<Client> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(self.attempt_timeout())
            .set_response_timeout(self.attempt_timeout())
            .set_number_of_retries(0);
        let manager = self
            .connect(|| client.get_connection_manager_with_config(config.clone()))
            .await?;
        Ok(self.build(Backend::Standalone(manager, client)))
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
        self.cluster_from(client).await
    }

    /// Connects through a `redis::cluster::ClusterClient` you configured
    /// yourself (TLS certificates, credentials; its own retry and timeout
    /// settings then apply as you set them).
    pub async fn cluster_from(self, client: redis::cluster::ClusterClient) -> Result<Client> {
        let conn = self.connect(|| client.get_async_connection()).await?;
        Ok(self.build(Backend::Cluster(conn, client)))
    }

    /// Runs `attempt` until it connects, fails for good, or the deadline.
    async fn connect<T, F>(&self, mut attempt: impl FnMut() -> F) -> Result<T>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let started = Instant::now();
        let mut backoff = self.retry.initial_backoff;
        let mut last: Option<Error> = None;
        loop {
            let left = self.retry.deadline.saturating_sub(started.elapsed());
            let error = match tokio::time::timeout(left, attempt()).await {
                Ok(Ok(connection)) => return Ok(connection),
                Ok(Err(e)) => Error::from_redis(e),
                Err(_) => {
                    let why = last.map_or(String::new(), |e| format!(" (last error: {e})"));
                    return Err(Error::Connection(redis::RedisError::from(
                        std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("not connected within {:?}{why}", self.retry.deadline),
                        ),
                    )));
                }
            };
            if !error.is_transient() || started.elapsed() + backoff >= self.retry.deadline {
                return Err(error);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.retry.max_backoff);
            last = Some(error);
        }
    }

    fn build(self, backend: Backend) -> Client {
        Client {
            backend,
            options: self,
        }
    }
}

/// How idempotent commands are retried on connection and cluster errors.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Give up after this long, counted from the first attempt.
    pub deadline: Duration,
    /// First backoff; doubles each attempt.
    pub initial_backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
    /// How long the client keeps trying to fence a reserve whose outcome
    /// was still unknown at `deadline` ([`Error::Abandoned`]), counted from
    /// then.
    pub fence_deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            deadline: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(500),
            fence_deadline: Duration::from_secs(10),
        }
    }
}

/// Wait for replicas after each write (`WAIT numreplicas timeout`).
#[derive(Clone, Copy, Debug)]
pub struct Durability {
    /// Replicas that should acknowledge.
    pub replicas: u64,
    /// How long to wait for them.
    pub timeout: Duration,
}
