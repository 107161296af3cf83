//! RiskService: thin handlers for the risk side. Writes go through the one writer like every
//! other write (rules and scopes in `ledger::risk_decider`); reads check the caller's scope here: rights'
//! records and programmes are public, defaults and valuations are the pledge's, claims their
//! bank's and their region's offices'.

use super::{Api, Sequenced, auth, convert, in_scope, min_sequence};
use crate::domain::LedgerError;
use crate::domain::principal::{Principal, Role};
use crate::domain::programme::Programme;
use crate::domain::right::RightRecord;
use crate::domain::risk::PledgeDefault;
use crate::ledger::{Answer, Command, query};
use crate::proto as pb;
use chrono::Datelike;
use prost::Message;
use tonic::{Request, Response, Status};

/// The year (China time) whose programme figures reads show.
fn this_year() -> i32 {
    crate::domain::pledge::china_date(chrono::Utc::now().timestamp_micros()).year()
}

impl Api {
    /// Writes a risk command and renders its resource.
    async fn write_risk<A: Answer, T>(
        &self,
        actor: &Principal,
        command: Command,
        request: &impl Message,
        render: impl FnOnce(&A) -> T,
    ) -> Result<Sequenced<T>, LedgerError> {
        let ticket = self.queue_ticket(actor, request)?;
        let (answer, sequence) = self.ledger.write_as::<A>(actor, command, ticket).await?;
        Ok(Sequenced(render(&answer), sequence))
    }
}

fn right(r: &RightRecord) -> pb::RightRecord {
    convert::right_record_to_pb(r)
}

fn default(d: &PledgeDefault) -> pb::PledgeDefault {
    convert::default_to_pb(d)
}

fn programme(p: &Programme) -> pb::Programme {
    convert::programme_to_pb(p, None)
}

#[tonic::async_trait]
impl pb::risk_service_server::RiskService for Api {
    async fn record_right(
        &self,
        request: Request<pb::RecordRightRequest>,
    ) -> Result<Response<pb::RightRecord>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let command = convert::record_right(request.get_ref())?;
            self.write_risk(&actor, command, request.get_ref(), right).await
        };
        self.unary("RecordRight", &actor, body).await.map(Sequenced::into_response)
    }

    async fn withdraw_right_state(
        &self,
        request: Request<pb::WithdrawRightStateRequest>,
    ) -> Result<Response<pb::RightRecord>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let command = convert::withdraw_right_state(request.get_ref())?;
            self.write_risk(&actor, command, request.get_ref(), right).await
        };
        self.unary("WithdrawRightState", &actor, body).await.map(Sequenced::into_response)
    }

    async fn get_right(&self, request: Request<pb::GetRightRequest>) -> Result<Response<pb::RightRecord>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            // The registers are public: every principal may read a right's record.
            let number = convert::get_right(request.get_ref())?;
            let record = self.ledger.read(move |s| query::right_record(s, &number)).await?;
            Ok(convert::right_record_to_pb(&record))
        };
        self.read_unary("GetRight", &actor, min_sequence(&request), body).await.map(Response::new)
    }

    async fn record_default(
        &self,
        request: Request<pb::RecordDefaultRequest>,
    ) -> Result<Response<pb::PledgeDefault>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let command = convert::record_default(request.get_ref())?;
            self.write_risk(&actor, command, request.get_ref(), default).await
        };
        self.unary("RecordDefault", &actor, body).await.map(Sequenced::into_response)
    }

    async fn resolve_default(
        &self,
        request: Request<pb::ResolveDefaultRequest>,
    ) -> Result<Response<pb::PledgeDefault>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let command = convert::resolve_default(request.get_ref())?;
            self.write_risk(&actor, command, request.get_ref(), default).await
        };
        self.unary("ResolveDefault", &actor, body).await.map(Sequenced::into_response)
    }

    async fn record_valuation(
        &self,
        request: Request<pb::RecordValuationRequest>,
    ) -> Result<Response<pb::Valuation>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let command = convert::record_valuation(request.get_ref())?;
            self.write_risk(&actor, command, request.get_ref(), convert::valuation_to_pb).await
        };
        self.unary("RecordValuation", &actor, body).await.map(Sequenced::into_response)
    }

    async fn create_programme(
        &self,
        request: Request<pb::CreateProgrammeRequest>,
    ) -> Result<Response<pb::Programme>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let command = convert::create_programme(request.get_ref())?;
            self.write_risk(&actor, command, request.get_ref(), programme).await
        };
        self.unary("CreateProgramme", &actor, body).await.map(Sequenced::into_response)
    }

    async fn get_programme(
        &self,
        request: Request<pb::GetProgrammeRequest>,
    ) -> Result<Response<pb::Programme>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            // Programmes are public policy: every principal may read them and their budget.
            let id = convert::id("id", &request.get_ref().id)?;
            let year = this_year();
            let (p, figures, left) = self.ledger.read(move |s| query::programme(s, id, year)).await?;
            Ok(convert::programme_to_pb(&p, Some((figures, left))))
        };
        self.read_unary("GetProgramme", &actor, min_sequence(&request), body).await.map(Response::new)
    }

    async fn list_programmes(
        &self,
        request: Request<pb::ListProgrammesRequest>,
    ) -> Result<Response<pb::ListProgrammesResponse>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let r = request.get_ref();
            let region = match r.region_code.trim() {
                "" => crate::domain::region::Region::COUNTRY,
                code => crate::domain::region::Region::parse(code)
                    .map_err(|e| LedgerError::invalid_field("regionCode", e))?,
            };
            let page_size = query::page_size(r.page_size)?.min(crate::ledger::risk_decider::PROGRAMMES_PER_REGION_MAX);
            let (token, year) = (r.page_token.clone(), this_year());
            let (programmes, next_page_token) =
                self.ledger.read(move |s| query::list_programmes(s, region, year, page_size, &token)).await?;
            Ok(pb::ListProgrammesResponse {
                programmes: programmes
                    .iter()
                    .map(|(p, y, left)| convert::programme_to_pb(p, Some((*y, *left))))
                    .collect(),
                next_page_token,
            })
        };
        self.read_unary("ListProgrammes", &actor, min_sequence(&request), body).await.map(Response::new)
    }

    async fn file_claim(&self, request: Request<pb::FileClaimRequest>) -> Result<Response<pb::Claim>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let command = convert::file_claim(request.get_ref())?;
            self.write_risk(&actor, command, request.get_ref(), convert::claim_to_pb).await
        };
        self.unary("FileClaim", &actor, body).await.map(Sequenced::into_response)
    }

    async fn decide_claim(&self, request: Request<pb::DecideClaimRequest>) -> Result<Response<pb::Claim>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let command = convert::decide_claim(request.get_ref())?;
            self.write_risk(&actor, command, request.get_ref(), convert::claim_to_pb).await
        };
        self.unary("DecideClaim", &actor, body).await.map(Sequenced::into_response)
    }

    async fn record_payment(&self, request: Request<pb::RecordPaymentRequest>) -> Result<Response<pb::Claim>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let command = convert::record_payment(request.get_ref())?;
            self.write_risk(&actor, command, request.get_ref(), convert::claim_to_pb).await
        };
        self.unary("RecordPayment", &actor, body).await.map(Sequenced::into_response)
    }

    async fn get_claim(&self, request: Request<pb::GetClaimRequest>) -> Result<Response<pb::Claim>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let id = convert::id("id", &request.get_ref().id)?;
            let found = self.ledger.read(move |s| query::claim(s, id)).await;
            in_scope(&actor, "claim", id, found, |c| actor.may_read_claim(&c.basis.bank, c.basis.county.region()))
                .map(|c| convert::claim_to_pb(&c))
        };
        self.read_unary("GetClaim", &actor, min_sequence(&request), body).await.map(Response::new)
    }

    async fn list_claims(
        &self,
        request: Request<pb::ListClaimsRequest>,
    ) -> Result<Response<pb::ListClaimsResponse>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let r = request.get_ref();
            let programme = match r.programme_id.trim() {
                "" => None,
                id => Some(convert::id("programmeId", id)?),
            };
            // A bank walks its own claims; an office one programme's (its scope filters them).
            let bank = match (&actor.role, programme) {
                (Role::Bank(code), _) => Some(code.clone()),
                (Role::Office(_), None) => {
                    return Err(LedgerError::invalid_field("programmeId", "an office lists one programme's claims"));
                }
                _ => None,
            };
            let filter = query::ClaimFilter { programme, bank };
            let page_size = query::page_size(r.page_size)?;
            let token = r.page_token.clone();
            let reader = actor.clone();
            let (claims, next_page_token) = self
                .ledger
                .read(move |s| {
                    query::list_claims(s, &filter, page_size, &token, |c| {
                        reader.may_read_claim(&c.basis.bank, c.basis.county.region())
                    })
                })
                .await?;
            Ok(pb::ListClaimsResponse { claims: claims.iter().map(convert::claim_to_pb).collect(), next_page_token })
        };
        self.read_unary("ListClaims", &actor, min_sequence(&request), body).await.map(Response::new)
    }

    async fn set_alert_policy(
        &self,
        request: Request<pb::SetAlertPolicyRequest>,
    ) -> Result<Response<pb::AlertPolicy>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let command = convert::set_alert_policy(request.get_ref())?;
            self.write_risk(&actor, command, request.get_ref(), convert::alert_policy_to_pb).await
        };
        self.unary("SetAlertPolicy", &actor, body).await.map(Sequenced::into_response)
    }

    async fn get_alert_policy(
        &self,
        request: Request<pb::GetAlertPolicyRequest>,
    ) -> Result<Response<pb::AlertPolicy>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let requested = convert::optional_credit_code("pledgeeCreditCode", &request.get_ref().pledgee_credit_code)?;
            // A bank reads its own; the admin names the bank; an office has no policy to read.
            let bank = match (&actor.role, requested) {
                (Role::Bank(own), None) => own.clone(),
                (_, Some(bank)) => bank,
                (_, None) => return Err(LedgerError::invalid_field("pledgeeCreditCode", "is required")),
            };
            crate::ledger::alerts::may_set_policy(&actor, &bank)?;
            let record = self.ledger.read(move |s| query::alert_policy(s, &bank)).await?;
            Ok(convert::alert_policy_to_pb(&record))
        };
        self.read_unary("GetAlertPolicy", &actor, min_sequence(&request), body).await.map(Response::new)
    }

    async fn list_alerts(
        &self,
        request: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        let actor = auth::principal(&request)?;
        let body = async {
            let r = request.get_ref();
            let requested = convert::list_alerts_filter(r)?;
            // A bank sees its own pledges' alerts, an office its region's, the admin all.
            let filter = query::AlertFilter {
                region: actor.scope_region(requested.region)?,
                pledgee: actor.scope_bank(requested.pledgee)?,
                ..requested
            };
            let page_size = query::page_size(r.page_size)?;
            let token = r.page_token.clone();
            let today = crate::domain::pledge::china_date(chrono::Utc::now().timestamp_micros());
            let (alerts, next_page_token) =
                self.ledger.read(move |s| query::list_alerts(s, &filter, today, page_size, &token)).await?;
            Ok(pb::ListAlertsResponse { alerts: alerts.iter().map(convert::alert_to_pb).collect(), next_page_token })
        };
        self.read_unary("ListAlerts", &actor, min_sequence(&request), body).await.map(Response::new)
    }
}
