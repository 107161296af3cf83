//! The journal over gRPC: a resumable change feed (WatchEvents), online verification and a
//! consistent export.

use super::{Api, auth, convert, status};
use crate::domain::LedgerError;
use crate::domain::principal::Principal;
use crate::ledger::events::Event;
use crate::ledger::journal::{self, Entry};
use crate::ledger::query;
use crate::proto as pb;
use std::pin::Pin;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// Entries read from the store per step of a feed or an export.
const FEED_CHUNK: usize = 1000;
/// Events buffered per watcher before the feed waits for the client.
const FEED_BUFFER: usize = 1024;

type EventStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

/// Whether `actor` may see `entry` in a feed.
fn visible(actor: &Principal, entry: &Entry) -> bool {
    match &entry.event {
        Event::PledgeRegistered { pledge } => actor.may_read_pledge(pledge),
        Event::PledgeChanged { after, .. } | Event::PledgeReleased { after, .. } => actor.may_read_pledge(after),
        Event::CreditLineCreated { line } => actor.may_read_line(line),
        Event::PrincipalCreated { .. } | Event::PrincipalRevoked { .. } | Event::CertificateBound { .. } => {
            actor.is_admin()
        }
    }
}

/// Sends the messages `map` makes of the entries `next..=head`, in order. Returns the sequence to
/// continue from, or `None` when the client went away or a read failed (the error was sent).
async fn send_entries<T>(
    ledger: &crate::ledger::Ledger,
    mut next: u64,
    head: u64,
    sender: &tokio::sync::mpsc::Sender<Result<T, Status>>,
    mut map: impl FnMut(&Entry) -> Option<Result<T, Status>>,
) -> Option<u64> {
    while next <= head {
        let from = next;
        let entries = match ledger.read(move |s| query::journal_entries(s, from, head, FEED_CHUNK)).await {
            Ok(entries) if !entries.is_empty() => entries,
            Ok(_) => break,
            Err(e) => {
                let _ = sender.send(Err(status::to_status(e))).await;
                return None;
            }
        };
        for entry in entries {
            next = entry.sequence + 1;
            if let Some(message) = map(&entry) {
                // An error ends the stream (the client was told why), as does a client gone away.
                let end = message.is_err();
                if sender.send(message).await.is_err() || end {
                    return None;
                }
            }
        }
    }
    Some(next)
}

#[tonic::async_trait]
impl pb::journal_service_server::JournalService for Api {
    type WatchEventsStream = EventStream<pb::JournalEvent>;
    type ExportJournalStream = EventStream<pb::ExportedEntry>;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let actor = auth::principal(&request)?;
        let permit = self.limiter.watcher(&actor.name).map_err(status::to_status)?;
        let mut next = request.get_ref().from_sequence.max(1);
        let ledger = self.ledger.clone();
        let mut committed = ledger.committed();
        let mut stopping = self.stopping.clone();
        let (sender, receiver) = tokio::sync::mpsc::channel(FEED_BUFFER);
        tokio::spawn(async move {
            let _permit = permit;
            let revoked = super::revoked(&ledger, &actor.name);
            tokio::pin!(revoked);
            loop {
                // Only committed (durable) entries are sent, in order, each once, and none after
                // the watcher's revocation.
                let head = *committed.borrow_and_update();
                let visible_event = |entry: &Entry| {
                    if ledger.principals().is_revoked(&actor.name) {
                        return Some(Err(status::to_status(super::revoked_error(&actor.name))));
                    }
                    visible(&actor, entry).then(|| Ok(convert::journal_event_to_pb(entry)))
                };
                match send_entries(&ledger, next, head, &sender, visible_event).await {
                    Some(n) => next = n,
                    None => return,
                }
                let now_revoked = tokio::select! {
                    changed = committed.changed() => if changed.is_err() { return } else { false },
                    () = sender.closed() => return,
                    // The server is stopping: end the feed; the client resumes elsewhere or later.
                    _ = stopping.wait_for(|s| *s) => return,
                    () = &mut revoked => true,
                };
                if now_revoked {
                    let _ = sender.send(Err(status::to_status(super::revoked_error(&actor.name)))).await;
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn verify_journal(
        &self,
        request: Request<pb::VerifyJournalRequest>,
    ) -> Result<Response<pb::VerifyJournalResponse>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            actor.require_admin_for("verify the journal")?;
            // Runs on the writer thread between two group commits, under a call slot.
            let _slot = self.limiter.call(&actor.name)?;
            let report = self.ledger.exclusive(journal::verify).await?;
            tracing::info!(entries = report.entries, ok = report.divergence.is_none(), "journal verified");
            Ok(convert::verify_report_to_pb(&report))
        };
        self.observe("VerifyJournal", &actor, body).await.map(Response::new)
    }

    async fn export_journal(
        &self,
        request: Request<pb::ExportJournalRequest>,
    ) -> Result<Response<Self::ExportJournalStream>, Status> {
        let actor = auth::principal(&request)?;
        actor.require_admin_for("export the journal").map_err(status::to_status)?;
        let permit = self.limiter.stream(&actor.name).map_err(status::to_status)?;
        // Consistent: the journal up to the entry committed when the call began. Entries never
        // change once written, so later writes cannot disturb the dump.
        let head = *self.ledger.committed().borrow();
        let ledger = self.ledger.clone();
        let (sender, receiver) = tokio::sync::mpsc::channel(FEED_BUFFER);
        tokio::spawn(async move {
            let _permit = permit;
            let json_line = |entry: &Entry| {
                if ledger.principals().is_revoked(&actor.name) {
                    return Some(Err(status::to_status(super::revoked_error(&actor.name))));
                }
                Some(match serde_json::to_string(entry) {
                    Ok(json) => Ok(pb::ExportedEntry { sequence: entry.sequence, json }),
                    Err(e) => Err(status::to_status(LedgerError::Internal(format!("entry {}: {e}", entry.sequence)))),
                })
            };
            send_entries(&ledger, 1, head, &sender, json_line).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}
