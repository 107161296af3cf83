//! The journal over gRPC: a resumable change feed (WatchEvents), online verification and a
//! consistent export.

use super::{Api, auth, convert, status};
use crate::domain::LedgerError;
use crate::domain::Reason;
use crate::domain::principal::Principal;
use crate::grpc::convert::FeedPledges;
use crate::ledger::export;
use crate::ledger::journal::{Entry, Event};
use crate::ledger::query;
use crate::proto as pb;
use std::pin::Pin;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// Entries read from the store per step of a feed or an export.
const FEED_CHUNK: usize = 1000;
/// Entries in one inclusion proof at most: a proof of an older entry than this is refused.
pub const PROOF_ENTRIES_MAX: u64 = 10_000;
/// Events buffered per watcher before the feed waits for the client.
const FEED_BUFFER: usize = 1024;

type EventStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

/// An entry with what a feed shows of it.
struct FeedItem {
    entry: Entry,
    shown: FeedPledges,
}

/// Whether `actor` may see an entry in a feed.
fn visible(actor: &Principal, item: &FeedItem) -> bool {
    match (&item.entry.event, &item.shown.after) {
        // The registers and the programmes are public.
        (
            Event::RightRecorded { .. }
            | Event::RightStateWithdrawn { .. }
            | Event::ProgrammeCreated { .. }
            | Event::TreeHeadCosigned { .. }
            | Event::DayOpened { .. },
            _,
        ) => true,
        (Event::ClaimDecided { .. } | Event::ClaimPaid { .. }, _) => match &item.shown.risk {
            Some(crate::ledger::Outcome::Claim(c)) => actor.may_read_claim(&c.basis.bank, c.basis.county.region()),
            _ => false,
        },
        (Event::CreditLineCreated { line }, _) => actor.may_read_line(line),
        (Event::PrincipalCreated { .. } | Event::PrincipalRevoked { .. } | Event::CertificateBound { .. }, _) => {
            actor.is_admin()
        }
        (Event::AlertPolicySet { bank, .. }, _) => crate::ledger::alerts::may_set_policy(actor, bank).is_ok(),
        (_, Some(pledge)) => actor.may_read_pledge(pledge),
        (_, None) => false,
    }
}

/// The event with the alerts its entry raised that `actor` may read: a bank its own pledges', an
/// office its region's (a right's record, public, may flag pledges of many banks).
fn with_alerts(actor: &Principal, mut event: pb::JournalEvent, item: &FeedItem) -> pb::JournalEvent {
    let readable = |a: &&crate::domain::alert::Alert| actor.may_read_claim(&a.pledgee, a.county.region());
    event.alerts = item.shown.alerts.iter().filter(readable).map(convert::alert_to_pb).collect();
    event
}

/// Reads entries `from..=to` (at most `limit`) with the pledge or principal each shows.
fn feed_items(
    store: &dyn crate::store::Store,
    journal: &dyn crate::ledger::journal::Journal,
    from: u64,
    to: u64,
    limit: usize,
) -> Result<Vec<FeedItem>, LedgerError> {
    let entries = query::journal_entries(journal, from, to, limit)?;
    entries
        .into_iter()
        .map(|entry| {
            let after = query::pledge_after(store, &entry)?;
            let before = match (&entry.event, &after) {
                (Event::PledgeChanged { .. } | Event::PledgeReleased { .. }, Some(p)) => p.as_at(entry.at - 1),
                _ => None,
            };
            let principal = match &entry.event {
                Event::PrincipalRevoked { name } | Event::CertificateBound { name, .. } => {
                    query::principal(store, name)?.map(|mut p| {
                        // As it was right after this entry: a later revocation is not shown.
                        p.revoke_time = p.revoke_time.filter(|t| *t <= entry.at);
                        p
                    })
                }
                _ => None,
            };
            let risk = crate::ledger::risk_decider::outcome_after(store, &entry)?;
            let alerts = query::alerts_raised(store, entry.sequence)?;
            Ok(FeedItem { entry, shown: FeedPledges { after, before, principal, risk, alerts } })
        })
        .collect()
}

/// Sends the messages `map` makes of the entries `next..=head`, in order. Returns the sequence to
/// continue from, or `None` when the client went away or a read failed (the error was sent).
async fn send_entries<T>(
    ledger: &crate::ledger::Ledger,
    mut next: u64,
    head: u64,
    sender: &tokio::sync::mpsc::Sender<Result<T, Status>>,
    mut map: impl FnMut(&FeedItem) -> Option<Result<T, Status>>,
) -> Option<u64> {
    while next <= head {
        let from = next;
        let journal = ledger.journal().clone();
        let read = ledger.read(move |s| feed_items(s, journal.as_ref(), from, head, FEED_CHUNK)).await;
        let items = match read {
            Ok(items) if !items.is_empty() => items,
            Ok(_) => break,
            Err(e) => {
                let _ = sender.send(Err(status::to_status(e))).await;
                return None;
            }
        };
        for item in items {
            next = item.entry.sequence + 1;
            if let Some(message) = map(&item) {
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
                let visible_event = |item: &FeedItem| {
                    if ledger.principals().is_revoked(&actor.name) {
                        return Some(Err(status::to_status(super::revoked_error(&actor.name))));
                    }
                    visible(&actor, item)
                        .then(|| Ok(with_alerts(&actor, convert::journal_event_to_pb(&item.entry, &item.shown), item)))
                };
                match Box::pin(send_entries(&ledger, next, head, &sender, visible_event)).await {
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
            // Beside the writer (writes go on), under a call slot, rebuilding into a scratch store
            // on disk so that memory stays bounded whatever the ledger's size.
            let _slot = self.limiter.call(&actor.name)?;
            let report = self.verify().await?;
            tracing::info!(entries = report.entries, ok = report.divergence.is_none(), "journal verified");
            Ok(convert::verify_report_to_pb(&report))
        };
        self.observe("VerifyJournal", &actor, body).await.map(Response::new)
    }

    async fn get_signed_head(
        &self,
        request: Request<pb::GetSignedHeadRequest>,
    ) -> Result<Response<pb::SignedHead>, Status> {
        let actor = auth::principal(&request)?;
        let body = async { Ok(convert::signed_head_to_pb(&self.ledger.signed_head().await?)) };
        self.unary("GetSignedHead", &actor, body).await.map(Response::new)
    }

    async fn get_journal_proof(
        &self,
        request: Request<pb::GetJournalProofRequest>,
    ) -> Result<Response<pb::JournalProof>, Status> {
        let actor = auth::principal(&request)?;
        let sequence = request.get_ref().sequence;
        let body = async {
            let signed = self.ledger.signed_head().await?;
            if sequence == 0 || sequence > signed.sequence {
                return Err(LedgerError::NotFound { resource: "journal entry", id: sequence.to_string() });
            }
            let length = signed.sequence - sequence + 1;
            if length > PROOF_ENTRIES_MAX {
                return Err(LedgerError::refused(
                    Reason::PROOF_TOO_LONG,
                    format!(
                        "a proof holds at most {PROOF_ENTRIES_MAX} entries; entry {sequence} is {length} from the head"
                    ),
                )
                .with("entries", length));
            }
            let journal = self.ledger.journal().clone();
            let to = signed.sequence;
            let items =
                self.ledger.read(move |s| feed_items(s, journal.as_ref(), sequence, to, length as usize)).await?;
            // Everything in a proof is readable by its caller: no entry reaches someone who may
            // not see it, and the answer says nothing of what it holds.
            if !actor.is_admin() && !items.iter().all(|item| visible(&actor, item)) {
                return Err(LedgerError::refused(
                    Reason::PROOF_NOT_READABLE,
                    format!("a proof of entry {sequence} holds later entries you may not read; ask again right after your write, or ask an admin"),
                )
                .with("sequence", sequence));
            }
            let journal = self.ledger.journal().clone();
            let stored = tokio::task::spawn_blocking(move || journal.read(sequence, length as usize))
                .await
                .map_err(|e| LedgerError::Internal(e.to_string()))??;
            Ok(pb::JournalProof {
                entries: stored.into_iter().map(|s| s.bytes).collect(),
                signed_head: Some(convert::signed_head_to_pb(&signed)),
            })
        };
        self.unary("GetJournalProof", &actor, body).await.map(Response::new)
    }

    async fn get_signed_tree_head(
        &self,
        request: Request<pb::GetSignedTreeHeadRequest>,
    ) -> Result<Response<pb::SignedTreeHead>, Status> {
        let actor = auth::principal(&request)?;
        let size = request.get_ref().tree_size;
        let body = async { Ok(convert::tree_head_to_pb(&self.ledger.tree_head(size).await?)) };
        self.unary("GetSignedTreeHead", &actor, body).await.map(Response::new)
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        let actor = auth::principal(&request)?;
        let (sequence, size) = (request.get_ref().sequence, request.get_ref().tree_size);
        let body = async {
            let (leaf, hashes, head) = self.ledger.inclusion_proof(sequence, size).await?;
            // The entry must be one the caller may read; the hashes around it reveal nothing.
            if !actor.is_admin() {
                let journal = self.ledger.journal().clone();
                let items = self.ledger.read(move |s| feed_items(s, journal.as_ref(), sequence, sequence, 1)).await?;
                if !items.iter().all(|item| visible(&actor, item)) {
                    return Err(LedgerError::NotFound { resource: "journal entry", id: sequence.to_string() });
                }
            }
            Ok(pb::InclusionProof {
                sequence,
                leaf_hash: crate::ledger::journal::hex(&leaf),
                hashes: convert::hashes_to_pb(&hashes),
                tree_head: Some(convert::tree_head_to_pb(&head)),
            })
        };
        self.unary("GetInclusionProof", &actor, body).await.map(Response::new)
    }

    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        let actor = auth::principal(&request)?;
        let (from, to) = (request.get_ref().from_size, request.get_ref().to_size);
        let body = async {
            let (from_root, hashes, head) = self.ledger.consistency_proof(from, to).await?;
            Ok(pb::ConsistencyProof {
                from_size: from,
                from_root_hash: crate::ledger::journal::hex(&from_root),
                hashes: convert::hashes_to_pb(&hashes),
                tree_head: Some(convert::tree_head_to_pb(&head)),
            })
        };
        self.unary("GetConsistencyProof", &actor, body).await.map(Response::new)
    }

    async fn add_tree_head_cosignature(
        &self,
        request: Request<pb::AddTreeHeadCosignatureRequest>,
    ) -> Result<Response<pb::SignedTreeHead>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let (head, signature) = convert::cosignature_request(request.get_ref())?;
            let ticket = self.queue_ticket(&actor, request.get_ref())?;
            let head = self.ledger.add_cosignature(&actor, &self.witnesses, head, signature, ticket).await?;
            Ok(convert::tree_head_to_pb(&head))
        };
        self.unary("AddTreeHeadCosignature", &actor, body).await.map(Response::new)
    }

    async fn export_journal(
        &self,
        request: Request<pb::ExportJournalRequest>,
    ) -> Result<Response<Self::ExportJournalStream>, Status> {
        let actor = auth::principal(&request)?;
        actor.require_admin_for("export the journal").map_err(status::to_status)?;
        let permit = self.limiter.stream(&actor.name).map_err(status::to_status)?;
        // Consistent: the journal up to its durable head when the call began, signed. Entries
        // never change once written, so later writes cannot disturb the dump.
        let signed = self.ledger.signed_head().await.map_err(status::to_status)?;
        let ledger = self.ledger.clone();
        let (sender, receiver) = tokio::sync::mpsc::channel(FEED_BUFFER);
        tokio::spawn(async move {
            let _permit = permit;
            let mut next = 1;
            while next <= signed.sequence {
                if ledger.principals().is_revoked(&actor.name) {
                    let _ = sender.send(Err(status::to_status(super::revoked_error(&actor.name)))).await;
                    return;
                }
                let (journal, from) = (ledger.journal().clone(), next);
                let limit = FEED_CHUNK.min((signed.sequence - next + 1) as usize);
                let chunk = tokio::task::spawn_blocking(move || journal.read(from, limit)).await;
                let chunk = match chunk {
                    Ok(Ok(chunk)) if !chunk.is_empty() => chunk,
                    Ok(Ok(_)) => break,
                    Ok(Err(e)) => {
                        let _ = sender.send(Err(status::to_status(e.into()))).await;
                        return;
                    }
                    Err(e) => {
                        let _ = sender.send(Err(status::to_status(LedgerError::Internal(e.to_string())))).await;
                        return;
                    }
                };
                for stored in chunk {
                    next = stored.sequence + 1;
                    let line = pb::ExportedEntry { sequence: stored.sequence, json: export::line(&stored) };
                    if sender.send(Ok(line)).await.is_err() {
                        return;
                    }
                }
            }
            // The tree of the same entries, signed too: a restore checks its own against it.
            let tree = match ledger.wait_for(signed.sequence, std::time::Duration::from_secs(5)).await {
                Ok(()) => ledger.tree_head(signed.sequence).await,
                Err(e) => Err(e),
            };
            let tree = match tree {
                Ok(tree) => tree,
                Err(e) => {
                    let _ = sender.send(Err(status::to_status(e))).await;
                    return;
                }
            };
            let json = export::head_line(&signed, Some(&tree.signed));
            let head = pb::ExportedEntry { sequence: signed.sequence, json };
            let _ = sender.send(Ok(head)).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}
