//! Admission: every kind of concurrent work has a bound for the whole server and a smaller one per
//! principal, so one caller, hostile or careless, can exhaust only its own share. A permit is held
//! only while its work is under way: a unary call for its duration, an open stream (an import, a
//! change feed) for its life but without taking a call slot, queued write bytes until the writer
//! has decided the write.
//!
//! Refusals are immediate (`try_*`) except for the write bytes of a stream, which wait: an import
//! is back-pressured, never refused half-way for going faster than the writer.

use crate::domain::LedgerError;
use crate::domain::principal::PrincipalName;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The bounds, for the server and for each principal. Every bound is at least 1 and every principal
/// bound must not exceed its server bound (`Quotas::check`; `Limiter::new` asserts it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quotas {
    /// Unary calls being handled at once.
    pub calls_max: u32,
    pub principal_calls_max: u32,
    /// Client streams (imports, journal exports) open at once.
    pub streams_max: u32,
    pub principal_streams_max: u32,
    /// Change feeds (WatchEvents) open at once.
    pub watchers_max: u32,
    pub principal_watchers_max: u32,
    /// Bytes of write requests waiting for the writer (their encoded size).
    pub queued_bytes_max: u32,
    pub principal_queued_bytes_max: u32,
}

impl Default for Quotas {
    fn default() -> Quotas {
        Quotas {
            calls_max: 4096,
            // The benchmark's 256 concurrent callers share one token; a bank's core system is one
            // principal too.
            principal_calls_max: 1024,
            streams_max: 256,
            principal_streams_max: 16,
            watchers_max: 256,
            principal_watchers_max: 16,
            queued_bytes_max: 256 << 20,
            principal_queued_bytes_max: 64 << 20,
        }
    }
}

impl Quotas {
    /// Each kind of work's name, server bound and per-principal share.
    pub fn shares(&self) -> [(&'static str, u32, u32); 4] {
        [
            ("calls", self.calls_max, self.principal_calls_max),
            ("streams", self.streams_max, self.principal_streams_max),
            ("change feeds", self.watchers_max, self.principal_watchers_max),
            ("queued write bytes", self.queued_bytes_max, self.principal_queued_bytes_max),
        ]
    }

    /// Why these quotas cannot be served, if they cannot: a bound of 0 admits nothing, and a share
    /// above its server bound could never be used.
    pub fn check(&self) -> Result<(), String> {
        for (what, server, share) in self.shares() {
            if server == 0 || share == 0 {
                return Err(format!(
                    "the bounds of {what} must be at least 1 (server {server}, per principal {share})"
                ));
            }
            if share > server {
                return Err(format!(
                    "the per-principal share of {what} ({share}) exceeds the server's bound ({server})"
                ));
            }
        }
        Ok(())
    }
}

/// What is being admitted: names the bound in refusals and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Call,
    Stream,
    Watcher,
    QueuedBytes,
}

impl Kind {
    fn reason(self) -> crate::domain::Reason {
        use crate::domain::Reason;
        match self {
            Kind::Call => Reason::TOO_MANY_REQUESTS,
            Kind::Stream => Reason::TOO_MANY_STREAMS,
            Kind::Watcher => Reason::TOO_MANY_WATCHERS,
            Kind::QueuedBytes => Reason::WRITE_QUEUE_FULL,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Kind::Call => "calls in flight",
            Kind::Stream => "open streams",
            Kind::Watcher => "open change feeds",
            Kind::QueuedBytes => "bytes of writes queued",
        }
    }
}

/// One semaphore per kind.
#[derive(Debug)]
struct Pools {
    calls: Arc<Semaphore>,
    streams: Arc<Semaphore>,
    watchers: Arc<Semaphore>,
    queued_bytes: Arc<Semaphore>,
}

impl Pools {
    fn new(calls: u32, streams: u32, watchers: u32, queued_bytes: u32) -> Pools {
        let pool = |n: u32| Arc::new(Semaphore::new(n as usize));
        Pools { calls: pool(calls), streams: pool(streams), watchers: pool(watchers), queued_bytes: pool(queued_bytes) }
    }

    fn pool(&self, kind: Kind) -> &Arc<Semaphore> {
        match kind {
            Kind::Call => &self.calls,
            Kind::Stream => &self.streams,
            Kind::Watcher => &self.watchers,
            Kind::QueuedBytes => &self.queued_bytes,
        }
    }
}

/// Held while admitted work is under way; dropping it gives the share back to the principal and
/// to the server.
#[derive(Debug)]
pub struct Permit {
    _server: OwnedSemaphorePermit,
    _principal: OwnedSemaphorePermit,
}

/// The server's bounds and every principal's share, in memory for the life of the process.
#[derive(Debug)]
pub struct Limiter {
    quotas: Quotas,
    server: Pools,
    /// One entry per principal that has called: bounded by the live principals (only they
    /// authenticate).
    principals: Mutex<HashMap<PrincipalName, Arc<Pools>>>,
}

impl Limiter {
    pub fn new(quotas: Quotas) -> Limiter {
        // The server checks its configuration before it builds a limiter: this is a program error.
        if let Err(why) = quotas.check() {
            panic!("a limiter on unchecked quotas: {why}");
        }
        let server = Pools::new(quotas.calls_max, quotas.streams_max, quotas.watchers_max, quotas.queued_bytes_max);
        Limiter { quotas, server, principals: Mutex::default() }
    }

    pub fn quotas(&self) -> &Quotas {
        &self.quotas
    }

    fn own(&self, who: &PrincipalName) -> Arc<Pools> {
        let mut principals = self.principals.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let q = &self.quotas;
        principals
            .entry(who.clone())
            .or_insert_with(|| {
                Arc::new(Pools::new(
                    q.principal_calls_max,
                    q.principal_streams_max,
                    q.principal_watchers_max,
                    q.principal_queued_bytes_max,
                ))
            })
            .clone()
    }

    fn refused(&self, kind: Kind, per_principal: bool) -> LedgerError {
        let q = &self.quotas;
        let limit = match (kind, per_principal) {
            (Kind::Call, false) => q.calls_max,
            (Kind::Call, true) => q.principal_calls_max,
            (Kind::Stream, false) => q.streams_max,
            (Kind::Stream, true) => q.principal_streams_max,
            (Kind::Watcher, false) => q.watchers_max,
            (Kind::Watcher, true) => q.principal_watchers_max,
            (Kind::QueuedBytes, false) => q.queued_bytes_max,
            (Kind::QueuedBytes, true) => q.principal_queued_bytes_max,
        };
        LedgerError::LimitReached { reason: kind.reason(), what: kind.what(), limit: u64::from(limit), per_principal }
    }

    /// Takes `n` units of `kind` from the principal's share, then from the server's, at once or not
    /// at all. The principal's share is taken first, so a principal over its own bound never
    /// touches the server's.
    fn try_take(&self, kind: Kind, who: &PrincipalName, n: u32) -> Result<Permit, LedgerError> {
        let own = self.own(who);
        let principal = own.pool(kind).clone().try_acquire_many_owned(n).map_err(|_| self.refused(kind, true))?;
        let server = self.server.pool(kind).clone().try_acquire_many_owned(n).map_err(|_| self.refused(kind, false))?;
        Ok(Permit { _server: server, _principal: principal })
    }

    /// A unary call's slot, held while it is handled.
    pub fn call(&self, who: &PrincipalName) -> Result<Permit, LedgerError> {
        self.try_take(Kind::Call, who, 1)
    }

    /// A client stream's slot (import, export), held while it is open.
    pub fn stream(&self, who: &PrincipalName) -> Result<Permit, LedgerError> {
        self.try_take(Kind::Stream, who, 1)
    }

    /// A change feed's slot, held while it is open.
    pub fn watcher(&self, who: &PrincipalName) -> Result<Permit, LedgerError> {
        self.try_take(Kind::Watcher, who, 1)
    }

    /// Room for a write of `bytes` in the writer's queue, refused at once when there is none.
    pub fn try_queue(&self, who: &PrincipalName, bytes: usize) -> Result<Permit, LedgerError> {
        self.try_take(Kind::QueuedBytes, who, self.queue_units(bytes))
    }

    /// Room for a write of `bytes` in the writer's queue, waiting for it (a stream's back-pressure).
    pub async fn queue(&self, who: &PrincipalName, bytes: usize) -> Result<Permit, LedgerError> {
        let n = self.queue_units(bytes);
        let closed = || LedgerError::Unavailable("the server is shutting down".to_owned());
        let own = self.own(who);
        let principal = own.queued_bytes.clone().acquire_many_owned(n).await.map_err(|_| closed())?;
        let server = self.server.queued_bytes.clone().acquire_many_owned(n).await.map_err(|_| closed())?;
        Ok(Permit { _server: server, _principal: principal })
    }

    /// A write counts its bytes, at least one, and never more than a principal's whole share: a
    /// request within the message size limit always fits an empty queue.
    fn queue_units(&self, bytes: usize) -> u32 {
        u32::try_from(bytes).unwrap_or(u32::MAX).clamp(1, self.quotas.principal_queued_bytes_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> PrincipalName {
        PrincipalName::parse(n).unwrap()
    }

    fn small() -> Limiter {
        Limiter::new(Quotas {
            calls_max: 3,
            principal_calls_max: 2,
            streams_max: 3,
            principal_streams_max: 2,
            watchers_max: 3,
            principal_watchers_max: 2,
            queued_bytes_max: 300,
            principal_queued_bytes_max: 200,
        })
    }

    /// Takes from a `take` function until refused; returns the refusal's (reason, per principal).
    fn check(limiter: &Limiter, take: impl Fn(&Limiter, &PrincipalName) -> Result<Permit, LedgerError>) {
        let (a, b, c) = (name("a"), name("b"), name("c"));
        let a1 = take(limiter, &a).unwrap();
        let _a2 = take(limiter, &a).unwrap();
        // a's own share is spent; b and c still get in until the server's bound.
        let refused = take(limiter, &a).unwrap_err();
        assert!(matches!(refused, LedgerError::LimitReached { per_principal: true, .. }), "{refused:?}");
        let _b1 = take(limiter, &b).unwrap();
        let refused = take(limiter, &c).unwrap_err();
        assert!(matches!(refused, LedgerError::LimitReached { per_principal: false, .. }), "{refused:?}");
        // Work done: the share comes back to a and to the server.
        drop(a1);
        let _c1 = take(limiter, &c).unwrap();
        assert!(take(limiter, &a).is_err());
    }

    #[test]
    fn each_kind_is_bounded_per_principal_and_for_the_server() {
        check(&small(), |l, who| l.call(who));
        check(&small(), |l, who| l.stream(who));
        check(&small(), |l, who| l.watcher(who));
        check(&small(), |l, who| l.try_queue(who, 100));
    }

    #[test]
    fn quotas_with_a_zero_bound_or_a_share_above_its_bound_are_refused() {
        Quotas::default().check().unwrap();
        let zero = Quotas { streams_max: 0, ..Quotas::default() };
        assert!(zero.check().unwrap_err().contains("streams"), "{zero:?}");
        let over = Quotas { calls_max: 32, ..Quotas::default() };
        let why = over.check().unwrap_err();
        assert!(why.contains("calls") && why.contains("1024") && why.contains("32"), "{why}");
    }

    #[test]
    fn kinds_do_not_share_slots() {
        let limiter = small();
        let a = name("a");
        let _streams = (limiter.stream(&a).unwrap(), limiter.stream(&a).unwrap());
        let _watchers = (limiter.watcher(&a).unwrap(), limiter.watcher(&a).unwrap());
        // Open streams and feeds hold no call slot.
        limiter.call(&a).unwrap();
    }

    #[test]
    fn a_write_larger_than_a_share_still_fits_an_empty_queue() {
        let limiter = small();
        let permit = limiter.try_queue(&name("a"), 10_000).unwrap();
        assert!(limiter.try_queue(&name("a"), 1).is_err());
        drop(permit);
        limiter.try_queue(&name("a"), 1).unwrap();
    }

    #[tokio::test]
    async fn a_stream_waits_for_room_in_the_queue() {
        let limiter = Arc::new(small());
        let held = limiter.try_queue(&name("a"), 200).unwrap();
        let waiting = {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.queue(&name("a"), 50).await.map(|_| ()) })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drop(held);
        waiting.await.unwrap().unwrap();
    }
}
