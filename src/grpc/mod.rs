//! The gRPC transport: thin handlers that authenticate (`auth`), convert the request (`convert`),
//! check the caller's scope, call the ledger, and map errors through the one status table
//! (`status`). Every call runs under a deadline and a bound on the requests in flight. The deadline
//! is the server's call timeout, or the client's own (`grpc-timeout`) when that comes first, so
//! that a client whose deadline runs out during the call reads DEADLINE_EXCEEDED with its
//! ErrorInfo.

pub mod auth;
pub mod codec;
pub mod convert;
mod journal;
pub mod limits;
mod risk;
pub mod status;

use crate::domain::LedgerError;
use crate::domain::credit_line::CreditLine;
use crate::domain::principal::{Principal, PrincipalName};
use crate::ledger::{Channel, Command, Ledger, PledgeAnswer, query};
use crate::proto as pb;
use futures::FutureExt;
use futures::stream::{FuturesOrdered, StreamExt};
use limits::{Limiter, Quotas};
use prost::Message;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status, Streaming};

/// Rejections listed in an import summary at most; further ones are only counted.
pub const IMPORT_REJECTIONS_MAX: u32 = 1000;
/// Writes one import stream keeps queued at once: enough to fill group commits, small enough that
/// one stream cannot take the whole write queue.
pub const IMPORT_IN_FLIGHT_MAX: usize = 2048;

/// The timeouts of calls and streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Deadline of every unary call.
    pub call: Duration,
    /// Deadline of one import stream.
    pub import: Duration,
    /// An import stream that sends nothing for this long is ended: an idle stream holds a slot.
    pub stream_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            call: Duration::from_secs(30),
            import: Duration::from_secs(4 * 3600),
            stream_idle: Duration::from_secs(60),
        }
    }
}

/// What every handler shares: the ledger, admission (`limits`) and the deadlines.
#[derive(Debug, Clone)]
pub struct Api {
    pub ledger: Ledger,
    limiter: Arc<Limiter>,
    /// Turns true when the server begins to shut down: change feeds end, so shutdown can finish.
    stopping: tokio::sync::watch::Receiver<bool>,
    timeouts: Timeouts,
    /// Where `VerifyJournal` rebuilds derived state (a directory of its own, removed after); `None`:
    /// in memory (engines given for tests).
    scratch_dir: Option<std::path::PathBuf>,
    /// The witnesses whose cosignatures of tree heads the server accepts (`--witness`).
    witnesses: Arc<[crate::ledger::transparency::Witness]>,
}

/// Response metadata with the journal sequence of a write: a read sent with
/// `x-ipledger-min-sequence` set to it sees the write (read your writes, on any node).
pub const SEQUENCE_HEADER: &str = "x-ipledger-sequence";
/// Request metadata: answer only once this node's derived state reflects this journal sequence.
pub const MIN_SEQUENCE_HEADER: &str = "x-ipledger-min-sequence";

/// How long a read waits for `x-ipledger-min-sequence` at most: a node that far behind answers
/// FAILED_PRECONDITION (SEQUENCE_NOT_REACHED), and the caller retries elsewhere or later.
pub const SEQUENCE_WAIT_MAX: Duration = Duration::from_secs(2);

/// A write's response and the journal sequence after which it is visible.
struct Sequenced<T>(T, u64);

impl<T> Sequenced<T> {
    fn into_response(self) -> Response<T> {
        let mut response = Response::new(self.0);
        response.metadata_mut().insert(SEQUENCE_HEADER, self.1.into());
        response
    }
}

/// The sequence a read asked to see at least (`x-ipledger-min-sequence`), if any.
fn min_sequence<T>(request: &Request<T>) -> Result<Option<u64>, LedgerError> {
    match request.metadata().get(MIN_SEQUENCE_HEADER) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| LedgerError::invalid_field(MIN_SEQUENCE_HEADER, "must be a journal sequence number")),
    }
}

/// Resolves once `name`'s revocation is committed: open streams end then.
async fn revoked(ledger: &Ledger, name: &PrincipalName) {
    let mut revocations = ledger.principals().revocations();
    loop {
        if ledger.principals().is_revoked(name) {
            return;
        }
        if revocations.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

fn revoked_error(name: &PrincipalName) -> LedgerError {
    LedgerError::Unauthenticated(format!("the token of {name} was revoked"))
}

tokio::task_local! {
    /// When the deadline the client sent with the call being handled (`grpc-timeout`) runs out.
    static CLIENT_DEADLINE: tokio::time::Instant;
}

/// The request header in which a gRPC client sends its deadline.
pub const GRPC_TIMEOUT_HEADER: &str = "grpc-timeout";

/// A call answers this much before the client's deadline at most (a tenth of the time left, when
/// less): tonic enforces the same deadline from a moment earlier and answers a bare CANCELLED, so
/// the server's own DEADLINE_EXCEEDED must come first.
const CLIENT_DEADLINE_MARGIN_MAX: Duration = Duration::from_millis(50);

/// The client's deadline in a `grpc-timeout` value: at most 8 digits and a unit (H, M, S, m, u,
/// n); `None` for anything else, which leaves the call to the server's timeout.
fn grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Middleware of every route: runs the request knowing the deadline its client sent, if any, for
/// `Api::call_timeout`.
pub async fn client_deadline(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let timeout = request.headers().get(GRPC_TIMEOUT_HEADER).and_then(|v| v.to_str().ok()).and_then(grpc_timeout);
    match timeout.and_then(|t| tokio::time::Instant::now().checked_add(t)) {
        Some(deadline) => CLIENT_DEADLINE.scope(deadline, next.run(request)).await,
        None => next.run(request).await,
    }
}

/// Runs `body` under `timeout`; every read it starts stops at the same deadline.
async fn within<T>(timeout: Duration, body: impl Future<Output = Result<T, LedgerError>>) -> Result<T, LedgerError> {
    match tokio::time::timeout(timeout, crate::ledger::with_deadline(timeout, body)).await {
        Ok(result) => result,
        Err(_) => Err(LedgerError::DeadlineExceeded(timeout.as_millis() as u64)),
    }
}

impl Api {
    pub fn new(
        ledger: Ledger,
        quotas: Quotas,
        timeouts: Timeouts,
        stopping: tokio::sync::watch::Receiver<bool>,
        scratch_dir: Option<std::path::PathBuf>,
    ) -> Api {
        Api {
            stopping,
            ledger,
            limiter: Arc::new(Limiter::new(quotas)),
            timeouts,
            scratch_dir,
            witnesses: Arc::from(Vec::new()),
        }
    }

    /// Accepts cosignatures of tree heads from `witnesses`.
    pub fn with_witnesses(self, witnesses: Vec<crate::ledger::transparency::Witness>) -> Api {
        Api { witnesses: witnesses.into(), ..self }
    }

    /// How long the call being handled may take: the server's call timeout, or less when the
    /// client's deadline comes first.
    fn call_timeout(&self) -> Duration {
        let server = self.timeouts.call;
        let client = CLIENT_DEADLINE.try_with(|deadline| {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            left - (left / 10).min(CLIENT_DEADLINE_MARGIN_MAX)
        });
        client.map_or(server, |client| client.min(server))
    }

    /// Verifies the journal and derived state beside the writer, rebuilding into a scratch store.
    async fn verify(&self) -> Result<crate::ledger::replay::Report, LedgerError> {
        match &self.scratch_dir {
            None => self.ledger.verify(Arc::new(crate::store::MemoryStore::default())).await,
            Some(dir) => {
                let scratch =
                    crate::datadir::Scratch::create(dir).map_err(|e| LedgerError::Unavailable(e.to_string()))?;
                let report = self.ledger.verify(scratch.store()).await;
                drop(scratch);
                report
            }
        }
    }

    /// One span per call (method, principal, outcome; never a token or a payload), its metrics, and
    /// the one status table.
    async fn observe<T>(
        &self,
        method: &'static str,
        actor: &Principal,
        body: impl Future<Output = Result<T, LedgerError>>,
    ) -> Result<T, Status> {
        use tracing::Instrument;
        let span = tracing::info_span!("rpc", method, principal = %actor.name);
        async {
            let started = std::time::Instant::now();
            let result = body.await;
            let elapsed_us = started.elapsed().as_micros() as u64;
            let metrics = &crate::metrics::METRICS;
            let status = result.as_ref().map_or_else(|e| e.reason(), |_| "OK");
            metrics.requests.get_or_create(&crate::metrics::RequestLabels { method, status }).inc();
            metrics
                .latency_seconds
                .get_or_create(&crate::metrics::MethodLabels { method })
                .observe(elapsed_us as f64 / 1e6);
            match &result {
                Ok(_) => tracing::debug!(elapsed_us, status = "OK", "rpc"),
                Err(e) => tracing::info!(elapsed_us, status = e.reason(), "rpc refused"),
            }
            result.map_err(status::to_status)
        }
        .instrument(span)
        .await
    }

    /// A unary call: a call slot of the principal's and the server's (refused at once when full: a
    /// clear RESOURCE_EXHAUSTED, never a queue that grows without bound), held while it runs, and
    /// the call deadline (the client's when sooner), which also stops its reads.
    async fn unary<T>(
        &self,
        method: &'static str,
        actor: &Principal,
        body: impl Future<Output = Result<T, LedgerError>>,
    ) -> Result<T, Status> {
        self.observe(method, actor, async {
            let _slot = self.limiter.call(&actor.name)?;
            within(self.call_timeout(), body).await
        })
        .await
    }

    /// `unary` for a read: first waits (within the call's timeout) until derived state reflects the
    /// journal sequence the caller asked to see, so it reads its own writes on any node.
    async fn read_unary<T>(
        &self,
        method: &'static str,
        actor: &Principal,
        min_sequence: Result<Option<u64>, LedgerError>,
        body: impl Future<Output = Result<T, LedgerError>>,
    ) -> Result<T, Status> {
        // Well inside the call's deadline, so the caller learns which sequence was not reached.
        let timeout = (self.timeouts.call / 2).min(SEQUENCE_WAIT_MAX);
        self.unary(method, actor, async {
            if let Some(sequence) = min_sequence? {
                self.ledger.wait_for(sequence, timeout).await?;
            }
            body.await
        })
        .await
    }

    /// A write's room in the queue, by its request's encoded size, refused at once when full.
    fn queue_ticket(&self, actor: &Principal, request: &impl Message) -> Result<crate::ledger::Ticket, LedgerError> {
        Ok(Box::new(self.limiter.try_queue(&actor.name, request.encoded_len())?))
    }

    async fn write_pledge(
        &self,
        actor: &Principal,
        command: Command,
        ticket: crate::ledger::Ticket,
    ) -> Result<Sequenced<pb::Pledge>, LedgerError> {
        let ((p, risk), sequence) = self.ledger.write_as::<PledgeAnswer>(actor, command, ticket).await?;
        // The resource as it now is, risk side included.
        Ok(Sequenced(convert::with_risk(convert::pledge_to_pb(&p), p.content.secured_amount, &risk), sequence))
    }
}

impl Api {
    /// Registers every record of an import stream, keeping up to `IMPORT_IN_FLIGHT_MAX` writes
    /// queued; each waits for room in the principal's share of the write queue (back-pressure).
    async fn import(
        &self,
        actor: &Principal,
        mut stream: Streaming<pb::RegisterPledgeRequest>,
    ) -> Result<pb::ImportPledgesResponse, LedgerError> {
        let mut summary = pb::ImportPledgesResponse { rejections_max: IMPORT_REJECTIONS_MAX, ..Default::default() };
        let mut in_flight = FuturesOrdered::new();
        let idle = self.timeouts.stream_idle;
        loop {
            let message = tokio::time::timeout(idle, stream.message())
                .await
                .map_err(|_| LedgerError::DeadlineExceeded(idle.as_millis() as u64))?
                .map_err(|s| LedgerError::Unavailable(s.message().to_owned()))?;
            let Some(message) = message else { break };
            let index = summary.received;
            summary.received += 1;
            let command = convert::registration(&message).map(|(request_id, pledge)| Command::RegisterPledge {
                request_id,
                pledge,
                channel: Channel::Import,
            });
            match command {
                Err(e) => record(&mut summary, index, message.request_id, Err(e)),
                Ok(command) => {
                    let ticket = self.limiter.queue(&actor.name, message.encoded_len()).await?;
                    let answer = self.ledger.enqueue(actor, command, Box::new(ticket)).await?;
                    in_flight.push_back(answer.map(move |r| {
                        let result =
                            r.unwrap_or_else(|_| Err(LedgerError::Unavailable("the writer stopped".to_owned())));
                        (index, message.request_id, result.map(|(_, replayed, _)| replayed))
                    }));
                }
            }
            // Collect what is already done, and wait when the stream has too much queued.
            while let Some(Some((index, request_id, result))) = in_flight.next().now_or_never() {
                record(&mut summary, index, request_id, result);
            }
            while in_flight.len() >= IMPORT_IN_FLIGHT_MAX {
                if let Some((index, request_id, result)) = in_flight.next().await {
                    record(&mut summary, index, request_id, result);
                }
            }
        }
        while let Some((index, request_id, result)) = in_flight.next().await {
            record(&mut summary, index, request_id, result);
        }
        summary.rejections.sort_by_key(|r| r.index);
        tracing::info!(
            principal = %actor.name,
            received = summary.received,
            registered = summary.registered,
            duplicates = summary.duplicates,
            rejected = summary.rejected,
            "import finished"
        );
        Ok(summary)
    }
}

/// AIP-211: a read outside the caller's scope fails with PERMISSION_DENIED whether or not the
/// resource exists; only an admin learns NOT_FOUND.
fn in_scope<T>(
    actor: &Principal,
    what: &str,
    id: uuid::Uuid,
    found: Result<T, LedgerError>,
    may_read: impl FnOnce(&T) -> bool,
) -> Result<T, LedgerError> {
    let denied = || LedgerError::PermissionDenied(format!("{} may not read {what} {id}", actor.name));
    match found {
        Ok(t) if actor.is_admin() || may_read(&t) => Ok(t),
        Ok(_) => Err(denied()),
        Err(LedgerError::NotFound { .. }) if !actor.is_admin() => Err(denied()),
        Err(e) => Err(e),
    }
}

fn import_rejection(index: u64, request_id: String, e: &LedgerError) -> pb::ImportRejection {
    let field_violations = match e {
        LedgerError::Invalid { violations, .. } => violations
            .iter()
            .map(|v| pb::FieldViolation { field: v.field.clone(), description: v.description.clone() })
            .collect(),
        _ => Vec::new(),
    };
    pb::ImportRejection {
        index,
        request_id,
        reason: e.reason().to_owned(),
        message: status::public_message(e),
        field_violations,
    }
}

fn record(summary: &mut pb::ImportPledgesResponse, index: u64, request_id: String, result: Result<bool, LedgerError>) {
    match result {
        Ok(false) => summary.registered += 1,
        Ok(true) => summary.duplicates += 1,
        Err(e) => {
            summary.rejected += 1;
            if summary.rejections.len() < IMPORT_REJECTIONS_MAX as usize {
                summary.rejections.push(import_rejection(index, request_id, &e));
            }
        }
    }
}

#[tonic::async_trait]
impl pb::pledge_service_server::PledgeService for Api {
    async fn register_pledge(
        &self,
        request: Request<pb::RegisterPledgeRequest>,
    ) -> Result<Response<pb::Pledge>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let (request_id, pledge) = convert::registration(request.get_ref())?;
            let command = Command::RegisterPledge { request_id, pledge, channel: Channel::Call };
            let ticket = self.queue_ticket(&actor, request.get_ref())?;
            self.write_pledge(&actor, command, ticket).await
        };
        Box::pin(self.unary("RegisterPledge", &actor, body)).await.map(Sequenced::into_response)
    }

    async fn import_pledges(
        &self,
        request: Request<Streaming<pb::RegisterPledgeRequest>>,
    ) -> Result<Response<pb::ImportPledgesResponse>, Status> {
        let actor = auth::principal(&request)?;
        let stream = request.into_inner();
        // A stream holds a stream slot while open, no call slot: idle streams cannot starve calls.
        let body = async {
            let _slot = self.limiter.stream(&actor.name)?;
            let revoked = revoked(&self.ledger, &actor.name);
            tokio::select! {
                summary = within(self.timeouts.import, self.import(&actor, stream)) => summary,
                () = revoked => Err(revoked_error(&actor.name)),
            }
        };
        Box::pin(self.observe("ImportPledges", &actor, body)).await.map(Response::new)
    }

    async fn get_pledge(&self, request: Request<pb::GetPledgeRequest>) -> Result<Response<pb::Pledge>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let id = convert::id("id", &request.get_ref().id)?;
            let found = self.ledger.read(move |s| Ok((query::pledge(s, id)?, query::pledge_risk(s, id)?))).await;
            in_scope(&actor, "pledge", id, found, |(p, _)| actor.may_read_pledge(p))
                .map(|(p, risk)| convert::with_risk(convert::pledge_to_pb(&p), p.content.secured_amount, &risk))
        };
        self.read_unary("GetPledge", &actor, min_sequence(&request), body).await.map(Response::new)
    }

    async fn list_pledges(
        &self,
        request: Request<pb::ListPledgesRequest>,
    ) -> Result<Response<pb::ListPledgesResponse>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let (mut filter, page_size) = convert::pledge_filter(request.get_ref())?;
            filter.region = actor.scope_region(filter.region)?;
            filter.pledgee = actor.scope_bank(filter.pledgee)?;
            let token = request.get_ref().page_token.clone();
            let (pledges, next_page_token) = self
                .ledger
                .read(move |s| {
                    let (pledges, token) = query::list_pledges(s, &filter, page_size, &token)?;
                    let shown = pledges
                        .iter()
                        .map(|p| {
                            let risk = query::pledge_risk(s, p.id)?;
                            Ok(convert::with_risk(convert::pledge_to_pb(p), p.content.secured_amount, &risk))
                        })
                        .collect::<Result<Vec<_>, LedgerError>>()?;
                    Ok((shown, token))
                })
                .await?;
            Ok(pb::ListPledgesResponse { pledges, next_page_token })
        };
        self.read_unary("ListPledges", &actor, min_sequence(&request), body).await.map(Response::new)
    }

    async fn change_pledge(&self, request: Request<pb::ChangePledgeRequest>) -> Result<Response<pb::Pledge>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let command = convert::change_command(request.get_ref())?;
            self.write_pledge(&actor, command, self.queue_ticket(&actor, request.get_ref())?).await
        };
        Box::pin(self.unary("ChangePledge", &actor, body)).await.map(Sequenced::into_response)
    }

    async fn release_pledge(&self, request: Request<pb::ReleasePledgeRequest>) -> Result<Response<pb::Pledge>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let command = convert::release_command(request.get_ref())?;
            self.write_pledge(&actor, command, self.queue_ticket(&actor, request.get_ref())?).await
        };
        Box::pin(self.unary("ReleasePledge", &actor, body)).await.map(Sequenced::into_response)
    }

    async fn lookup_right(
        &self,
        request: Request<pb::LookupRightRequest>,
    ) -> Result<Response<pb::LookupRightResponse>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            // Every principal may ask: the answer holds only what the public register shows.
            let number = convert::right_lookup(request.get_ref())?;
            let key = number.clone();
            let active = self.ledger.read(move |s| query::active_pledge_of(s, &key)).await?;
            Ok(convert::right_lookup_to_pb(&number, active.as_ref()))
        };
        self.read_unary("LookupRight", &actor, min_sequence(&request), body).await.map(Response::new)
    }

    async fn get_pledge_certificate(
        &self,
        request: Request<pb::GetPledgeCertificateRequest>,
    ) -> Result<Response<pb::PledgeCertificate>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let id = convert::id("id", &request.get_ref().id)?;
            let found = self.ledger.read(move |s| query::pledge(s, id)).await;
            in_scope(&actor, "pledge", id, found, |p| actor.may_read_pledge(p))?;
            Ok(convert::certificate_to_pb(&self.ledger.pledge_certificate(id).await?))
        };
        self.read_unary("GetPledgeCertificate", &actor, min_sequence(&request), body).await.map(Response::new)
    }

    async fn get_pledge_history(
        &self,
        request: Request<pb::GetPledgeHistoryRequest>,
    ) -> Result<Response<pb::GetPledgeHistoryResponse>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let id = convert::id("id", &request.get_ref().id)?;
            let page_size = match request.get_ref().page_size {
                n if n < 0 => return Err(LedgerError::invalid_field("pageSize", "must not be negative")),
                0 => query::HISTORY_MAX,
                n => (n as usize).min(query::HISTORY_MAX),
            };
            // The pledge as it is decides the scope (its county and pledgee never change).
            let found = self.ledger.read(move |s| query::pledge(s, id)).await;
            in_scope(&actor, "pledge", id, found, |p| actor.may_read_pledge(p))?;
            let token = request.get_ref().page_token.clone();
            let journal = self.ledger.journal().clone();
            let (versions, next_page_token) =
                self.ledger.read(move |s| query::pledge_history(s, journal.as_ref(), id, page_size, &token)).await?;
            Ok(pb::GetPledgeHistoryResponse {
                versions: versions.iter().map(|(entry, pledge)| convert::pledge_version_to_pb(entry, pledge)).collect(),
                next_page_token,
            })
        };
        self.read_unary("GetPledgeHistory", &actor, min_sequence(&request), body).await.map(Response::new)
    }
}

#[tonic::async_trait]
impl pb::credit_line_service_server::CreditLineService for Api {
    async fn create_credit_line(
        &self,
        request: Request<pb::CreateCreditLineRequest>,
    ) -> Result<Response<pb::CreditLine>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let (request_id, line) = convert::credit_line_creation(request.get_ref())?;
            let command = Command::CreateCreditLine { request_id, line };
            let ticket = self.queue_ticket(&actor, request.get_ref())?;
            let (line, sequence) = self.ledger.write_as::<CreditLine>(&actor, command, ticket).await?;
            Ok(Sequenced(convert::credit_line_to_pb(&line), sequence))
        };
        self.unary("CreateCreditLine", &actor, body).await.map(Sequenced::into_response)
    }

    async fn get_credit_line(
        &self,
        request: Request<pb::GetCreditLineRequest>,
    ) -> Result<Response<pb::CreditLine>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let id = convert::id("id", &request.get_ref().id)?;
            let found = self.ledger.read(move |s| query::credit_line(s, id)).await;
            in_scope(&actor, "credit line", id, found, |l| actor.may_read_line(l))
                .map(|l| convert::credit_line_to_pb(&l))
        };
        self.read_unary("GetCreditLine", &actor, min_sequence(&request), body).await.map(Response::new)
    }

    async fn list_credit_lines(
        &self,
        request: Request<pb::ListCreditLinesRequest>,
    ) -> Result<Response<pb::ListCreditLinesResponse>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let (mut filter, page_size) = convert::credit_line_filter(request.get_ref())?;
            filter.region = actor.scope_region(filter.region)?;
            filter.bank = actor.scope_bank(filter.bank)?;
            let token = request.get_ref().page_token.clone();
            let (lines, next_page_token) =
                self.ledger.read(move |s| query::list_credit_lines(s, &filter, page_size, &token)).await?;
            Ok(pb::ListCreditLinesResponse {
                credit_lines: lines.iter().map(convert::credit_line_to_pb).collect(),
                next_page_token,
            })
        };
        self.read_unary("ListCreditLines", &actor, min_sequence(&request), body).await.map(Response::new)
    }
}

#[tonic::async_trait]
impl pb::exposure_service_server::ExposureService for Api {
    async fn get_exposure(
        &self,
        request: Request<pb::GetExposureRequest>,
    ) -> Result<Response<pb::GetExposureResponse>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let (region, group_by, as_of) = convert::exposure_query(request.get_ref())?;
            // An empty region code is the caller's whole scope: the country, or an office's region.
            let requested = (!request.get_ref().region_code.trim().is_empty()).then_some(region);
            let region = actor.scope_region(requested)?.unwrap_or(region);
            let bank = actor.scope_bank(None)?;
            // Today in China, read once at the edge: the year whose budget is left now.
            let today = crate::domain::pledge::china_date(chrono::Utc::now().timestamp_micros());
            let exposure =
                self.ledger.read(move |s| query::exposure(s, region, group_by, bank.as_ref(), as_of, today)).await?;
            Ok(convert::exposure_to_pb(exposure))
        };
        self.read_unary("GetExposure", &actor, min_sequence(&request), body).await.map(Response::new)
    }

    async fn get_statistics(
        &self,
        request: Request<pb::GetStatisticsRequest>,
    ) -> Result<Response<pb::GetStatisticsResponse>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let query = convert::statistics_query(request.get_ref())?;
            self.statistics(&actor, query).await
        };
        self.read_unary("GetStatistics", &actor, min_sequence(&request), body).await.map(Response::new)
    }
}

impl Api {
    async fn statistics(
        &self,
        actor: &Principal,
        query: convert::StatisticsQuery,
    ) -> Result<pb::GetStatisticsResponse, LedgerError> {
        let region = actor.scope_region(query.region)?.unwrap_or(crate::domain::region::Region::COUNTRY);
        let bank = actor.scope_bank(None)?;
        let (period, grouping, threshold, kinds) = (query.period, query.grouping, query.threshold, query.kinds);
        let (current, previous) = self
            .ledger
            .read(move |s| {
                let current = query::statistics(s, region, period, grouping, threshold, kinds, bank.as_ref())?;
                let previous =
                    query::statistics(s, region, period.previous(), grouping, threshold, kinds, bank.as_ref())?;
                Ok((current, previous))
            })
            .await?;
        Ok(convert::statistics_to_pb(region, &query, &current, &previous))
    }
}

#[tonic::async_trait]
impl pb::admin_service_server::AdminService for Api {
    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            actor.require_admin()?;
            let (name, role) = convert::token_request(request.get_ref())?;
            let (record, token) = crate::ledger::tokens::create(&self.ledger, &actor, name, role).await?;
            Ok(pb::CreateTokenResponse { principal: Some(convert::token_to_pb(&record.principal)), token })
        };
        self.unary("CreateToken", &actor, body).await.map(Response::new)
    }

    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            actor.require_admin()?;
            let page_size = query::page_size(request.get_ref().page_size)?;
            let token = request.get_ref().page_token.clone();
            let (records, next_page_token) =
                self.ledger.read(move |s| query::list_principals(s, page_size, &token)).await?;
            Ok(pb::ListTokensResponse {
                tokens: records.iter().map(|r| convert::token_to_pb(&r.principal)).collect(),
                next_page_token,
            })
        };
        self.read_unary("ListTokens", &actor, min_sequence(&request), body).await.map(Response::new)
    }

    async fn revoke_token(&self, request: Request<pb::RevokeTokenRequest>) -> Result<Response<pb::Token>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            actor.require_admin()?;
            let name = crate::domain::principal::PrincipalName::parse(&request.get_ref().name)
                .map_err(|e| LedgerError::invalid_field("name", e))?;
            let record = crate::ledger::tokens::revoke(&self.ledger, &actor, name).await?;
            Ok(convert::token_to_pb(&record.principal))
        };
        self.unary("RevokeToken", &actor, body).await.map(Response::new)
    }

    async fn bind_certificate(
        &self,
        request: Request<pb::BindCertificateRequest>,
    ) -> Result<Response<pb::Token>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            actor.require_admin()?;
            let (name, binding) = convert::bind_certificate_request(request.get_ref())?;
            let (record, bindings) =
                crate::ledger::tokens::bind_certificate(&self.ledger, &actor, name, binding).await?;
            let mut token = convert::token_to_pb(&record.principal);
            token.certificate_bindings = bindings.iter().map(convert::certificate_binding_to_pb).collect();
            Ok(token)
        };
        self.unary("BindCertificate", &actor, body).await.map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_values_are_read_as_the_protocol_defines_them() {
        assert_eq!(grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(grpc_timeout("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "m", "123456789m", "12x", "-1S", "1.5S", "١S"] {
            assert_eq!(grpc_timeout(bad), None, "{bad:?}");
        }
    }
}
