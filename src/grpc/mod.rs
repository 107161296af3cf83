//! The gRPC transport: thin handlers that convert the request (`convert`), call the ledger, and
//! map errors through the one status table (`status`).

pub mod convert;
pub mod status;

use crate::domain::LedgerError;
use crate::ledger::{Ledger, Outcome, query};
use crate::proto as pb;
use futures::FutureExt;
use futures::stream::{FuturesOrdered, StreamExt};
use tonic::{Request, Response, Status, Streaming};

/// Rejections listed in an import summary at most; further ones are only counted.
pub const IMPORT_REJECTIONS_MAX: u32 = 1000;
/// Writes one import stream keeps queued at once: enough to fill group commits, small enough that
/// one stream cannot take the whole write queue.
pub const IMPORT_IN_FLIGHT_MAX: usize = 2048;

fn pledge_of(outcome: Outcome) -> Result<pb::Pledge, Status> {
    match outcome {
        Outcome::Pledge(p) => Ok(convert::pledge_to_pb(&p)),
        Outcome::CreditLine(_) => {
            Err(status::to_status(LedgerError::Internal("a pledge write produced a credit line".to_owned())))
        }
    }
}

#[derive(Debug, Clone)]
pub struct PledgeApi {
    pub ledger: Ledger,
}

#[tonic::async_trait]
impl pb::pledge_service_server::PledgeService for PledgeApi {
    async fn register_pledge(
        &self,
        request: Request<pb::RegisterPledgeRequest>,
    ) -> Result<Response<pb::Pledge>, Status> {
        let command = convert::register_command(request.get_ref()).map_err(status::to_status)?;
        let (outcome, _) = self.ledger.write(command).await.map_err(status::to_status)?;
        Ok(Response::new(pledge_of(outcome)?))
    }

    async fn import_pledges(
        &self,
        request: Request<Streaming<pb::RegisterPledgeRequest>>,
    ) -> Result<Response<pb::ImportPledgesResponse>, Status> {
        let mut stream = request.into_inner();
        let mut summary = pb::ImportPledgesResponse { rejections_max: IMPORT_REJECTIONS_MAX, ..Default::default() };
        let mut in_flight = FuturesOrdered::new();
        let record = |summary: &mut pb::ImportPledgesResponse,
                      index: u64,
                      request_id: String,
                      result: Result<bool, LedgerError>| match result {
            Ok(false) => summary.registered += 1,
            Ok(true) => summary.duplicates += 1,
            Err(e) => {
                summary.rejected += 1;
                if summary.rejections.len() < IMPORT_REJECTIONS_MAX as usize {
                    let field_violations = match &e {
                        LedgerError::Invalid { violations, .. } => violations
                            .iter()
                            .map(|v| pb::FieldViolation { field: v.field.clone(), description: v.description.clone() })
                            .collect(),
                        _ => Vec::new(),
                    };
                    summary.rejections.push(pb::ImportRejection {
                        index,
                        request_id,
                        reason: e.reason().to_owned(),
                        message: e.to_string(),
                        field_violations,
                    });
                }
            }
        };
        while let Some(message) = stream.message().await? {
            let index = summary.received;
            summary.received += 1;
            match convert::register_command(&message) {
                Err(e) => record(&mut summary, index, message.request_id, Err(e)),
                Ok(command) => {
                    let answer = self.ledger.enqueue(command).await.map_err(status::to_status)?;
                    in_flight.push_back(answer.map(move |r| {
                        let result =
                            r.unwrap_or_else(|_| Err(LedgerError::Unavailable("the writer stopped".to_owned())));
                        (index, message.request_id, result.map(|(_, replayed)| replayed))
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
            received = summary.received,
            registered = summary.registered,
            duplicates = summary.duplicates,
            rejected = summary.rejected,
            "import finished"
        );
        Ok(Response::new(summary))
    }

    async fn get_pledge(&self, request: Request<pb::GetPledgeRequest>) -> Result<Response<pb::Pledge>, Status> {
        let id = convert::id("id", &request.get_ref().id).map_err(status::to_status)?;
        let pledge = self.ledger.read(move |s| query::pledge(s, id)).await.map_err(status::to_status)?;
        Ok(Response::new(convert::pledge_to_pb(&pledge)))
    }

    async fn list_pledges(
        &self,
        request: Request<pb::ListPledgesRequest>,
    ) -> Result<Response<pb::ListPledgesResponse>, Status> {
        let (filter, page_size) = convert::pledge_filter(request.get_ref()).map_err(status::to_status)?;
        let token = request.into_inner().page_token;
        let (pledges, next_page_token) = self
            .ledger
            .read(move |s| query::list_pledges(s, &filter, page_size, &token))
            .await
            .map_err(status::to_status)?;
        Ok(Response::new(pb::ListPledgesResponse {
            pledges: pledges.iter().map(convert::pledge_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn change_pledge(&self, request: Request<pb::ChangePledgeRequest>) -> Result<Response<pb::Pledge>, Status> {
        let command = convert::change_command(request.get_ref()).map_err(status::to_status)?;
        let (outcome, _) = self.ledger.write(command).await.map_err(status::to_status)?;
        Ok(Response::new(pledge_of(outcome)?))
    }

    async fn release_pledge(&self, request: Request<pb::ReleasePledgeRequest>) -> Result<Response<pb::Pledge>, Status> {
        let command = convert::release_command(request.get_ref()).map_err(status::to_status)?;
        let (outcome, _) = self.ledger.write(command).await.map_err(status::to_status)?;
        Ok(Response::new(pledge_of(outcome)?))
    }
}

#[derive(Debug, Clone)]
pub struct CreditLineApi {
    pub ledger: Ledger,
}

#[tonic::async_trait]
impl pb::credit_line_service_server::CreditLineService for CreditLineApi {
    async fn create_credit_line(
        &self,
        request: Request<pb::CreateCreditLineRequest>,
    ) -> Result<Response<pb::CreditLine>, Status> {
        let command = convert::create_credit_line_command(request.get_ref()).map_err(status::to_status)?;
        match self.ledger.write(command).await.map_err(status::to_status)? {
            (Outcome::CreditLine(line), _) => Ok(Response::new(convert::credit_line_to_pb(&line))),
            (Outcome::Pledge(_), _) => {
                Err(status::to_status(LedgerError::Internal("a credit-line write produced a pledge".to_owned())))
            }
        }
    }

    async fn get_credit_line(
        &self,
        request: Request<pb::GetCreditLineRequest>,
    ) -> Result<Response<pb::CreditLine>, Status> {
        let id = convert::id("id", &request.get_ref().id).map_err(status::to_status)?;
        let line = self.ledger.read(move |s| query::credit_line(s, id)).await.map_err(status::to_status)?;
        Ok(Response::new(convert::credit_line_to_pb(&line)))
    }

    async fn list_credit_lines(
        &self,
        request: Request<pb::ListCreditLinesRequest>,
    ) -> Result<Response<pb::ListCreditLinesResponse>, Status> {
        let (filter, page_size) = convert::credit_line_filter(request.get_ref()).map_err(status::to_status)?;
        let token = request.into_inner().page_token;
        let (lines, next_page_token) = self
            .ledger
            .read(move |s| query::list_credit_lines(s, &filter, page_size, &token))
            .await
            .map_err(status::to_status)?;
        Ok(Response::new(pb::ListCreditLinesResponse {
            credit_lines: lines.iter().map(convert::credit_line_to_pb).collect(),
            next_page_token,
        }))
    }
}

#[derive(Debug, Clone)]
pub struct ExposureApi {
    pub ledger: Ledger,
}

#[tonic::async_trait]
impl pb::exposure_service_server::ExposureService for ExposureApi {
    async fn get_exposure(
        &self,
        request: Request<pb::GetExposureRequest>,
    ) -> Result<Response<pb::GetExposureResponse>, Status> {
        let (region, group_by) = convert::exposure_query(request.get_ref()).map_err(status::to_status)?;
        let exposure =
            self.ledger.read(move |s| query::exposure(s, region, group_by)).await.map_err(status::to_status)?;
        Ok(Response::new(convert::exposure_to_pb(exposure)))
    }
}
