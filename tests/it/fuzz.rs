//! Finding 1 (a panic reachable from input) and the fuzzing harness: property-based generation
//! (proptest, on the stable toolchain) of requests of every type the proto declares, with
//! arbitrary UTF-8 in every string field, arbitrary numbers in every enum and integer, nested
//! messages present or absent and repeated fields of varying length, plus mutations of valid
//! requests so that inputs get past validation. Every input must get an answer, never a panic:
//!
//! - in-process: every request message through its parser in `grpc::convert` (and every domain
//!   parser, and the proto3 JSON parser) on the test thread;
//! - black-box: one real server, real clients as an admin, a bank, an office, no one and arbitrary
//!   `authorization` values, every RPC of every service (streams included); every call ends in
//!   OK or a status the error table gives callers, with an ErrorInfo reason, no server thread
//!   panics, and afterwards the server still answers the health check and a valid registration;
//! - the JSON API: arbitrary bytes, arbitrary JSON and request-shaped JSON into
//!   `POST /api/<service>/<method>` for every offered method and unknown ones, with and without a
//!   token and content type: always an HTTP answer (200, or a Connect error body with a code).
//!
//! The messages come from the service's own descriptors (`protojson::pool`), so a request type or
//! an RPC added to the proto is fuzzed without a change here. `IPLEDGER_FUZZ_CASES` sets the cases
//! per target (default `CASES_DEFAULT`, 20 to 40 s for the whole harness in a debug build);
//! a failure prints its minimal input and is kept under `tests/it/fuzz-regressions/` to be
//! replayed first by every later run.

use crate::credit_lines::line;
use crate::helpers::*;
use ipledger::domain::ident::{CreditCode, RightKind, RightNumber};
use ipledger::domain::money::Money;
use ipledger::domain::pledge::RegistrationNumber;
use ipledger::domain::principal::{PrincipalName, parse_given_token};
use ipledger::domain::region::{CountyCode, Region};
use ipledger::domain::text::{Name, Note, Reason, parse_date};
use ipledger::grpc::convert;
use ipledger::http::gateway::BODY_BYTES_MAX;
use ipledger::ledger::query;
use ipledger::proto as pb;
use ipledger::protojson;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use prost::Message;
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor, ReflectMessage, Value,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic_types::StatusExt;

/// Cases per target when `IPLEDGER_FUZZ_CASES` is not set: the whole harness (in-process,
/// black-box and JSON API) takes 20 to 40 s of `cargo test` in a debug build on 2 cores.
const CASES_DEFAULT: u32 = 160;
/// In-process targets are cheap (no I/O): they run this many times the cases.
const IN_PROCESS_CASES_FACTOR: u32 = 4;
/// Atoms (random choices) behind one generated message; fields past the last are left default.
const ATOMS_MAX: usize = 48;
/// Nested messages below this depth are left absent (the request types nest at most 3 deep).
const DEPTH_MAX: usize = 4;
/// Elements of a generated repeated field at most (a mutation can also grow one past the
/// 500-rights limit).
const LIST_LEN_MAX: usize = 8;
const LIST_LEN_HUGE: usize = 600;
/// Records in one fuzzed ImportPledges stream at most.
const STREAM_RECORDS_MAX: usize = 4;
/// Messages read from a fuzzed server stream before it is dropped, and the wait for each: a feed
/// that has caught up waits for new events, which is an answer too.
const STREAM_MESSAGES_READ: usize = 3;
const STREAM_WAIT_MS: u64 = 50;
/// Any single call or HTTP exchange of the harness takes at most this long.
const EXCHANGE_TIMEOUT_S: u64 = 30;
/// Threads of the black-box server's runtime: panics on them are counted.
const SERVER_THREAD_NAME: &str = "ipledger-fuzz-server";

/// The text of finding 1: a patent-looking number ending inside a two-byte character.
const MULTIBYTE_RIGHT_NUMBER: &str = "ZLé";

// ---------------------------------------------------------------------------------------------
// Finding 1, black-box.

#[tokio::test]
async fn list_pledges_with_a_right_number_ending_in_a_multibyte_character_answers() {
    let server = TestServer::start().await;
    let mut pledges = server.pledges().await;
    // The issue's request, no kind: a text that is neither a patent nor a trademark number is a
    // copyright registration number (README), so the answer is an empty page, not a reset.
    let any_kind = pb::ListPledgesRequest { right_number: MULTIBYTE_RIGHT_NUMBER.into(), ..Default::default() };
    let page = pledges.list_pledges(any_kind).await.unwrap().into_inner();
    assert!(page.pledges.is_empty());
    let patent = pb::ListPledgesRequest {
        right_number: MULTIBYTE_RIGHT_NUMBER.into(),
        right_kind: pb::RightKind::InventionPatent as i32,
        ..Default::default()
    };
    let status = pledges.list_pledges(patent).await.unwrap_err();
    assert_eq!(failure(status), (Code::InvalidArgument, "INVALID_FIELDS".to_owned(), vec!["rightNumber".to_owned()]));
    server.stop().await;
}

#[tokio::test]
async fn the_json_api_with_a_right_number_ending_in_a_multibyte_character_answers() {
    let server = TestServer::start().await;
    let path = "/api/ipledger.v1.PledgeService/ListPledges";
    let json = [("content-type", b"application/json".to_vec()), ("authorization", bearer(&server.admin_token))];
    let body = format!(r#"{{"rightNumber": "{MULTIBYTE_RIGHT_NUMBER}"}}"#);
    let (status, answer) = http_post(server.addr, path, &json, body.as_bytes()).await.unwrap();
    assert_eq!((status, answer), (200, serde_json::json!({})));
    let body = format!(r#"{{"rightNumber": "{MULTIBYTE_RIGHT_NUMBER}", "rightKind": "INVENTION_PATENT"}}"#);
    let (status, answer) = http_post(server.addr, path, &json, body.as_bytes()).await.unwrap();
    assert_eq!((status, answer["code"].as_str()), (400, Some("invalid_argument")));
    let violations = answer["details"].as_array().unwrap().iter().find(|d| d["type"] == "google.rpc.BadRequest");
    assert_eq!(violations.unwrap()["debug"]["fieldViolations"][0]["field"], "rightNumber");
    server.stop().await;
}

fn with_multibyte_right_number() -> pb::RegisterPledgeRequest {
    let mut bad = pledge("330108", "100.00");
    bad.rights[0].number = MULTIBYTE_RIGHT_NUMBER.into();
    register(bad)
}

#[tokio::test]
async fn a_registration_with_a_right_number_ending_in_a_multibyte_character_is_refused() {
    let server = TestServer::start().await;
    let status = server.pledges().await.register_pledge(with_multibyte_right_number()).await.unwrap_err();
    let field = "pledge.rights[0].number".to_owned();
    assert_eq!(failure(status), (Code::InvalidArgument, "INVALID_FIELDS".to_owned(), vec![field]));
    server.stop().await;
}

#[tokio::test]
async fn an_import_with_a_right_number_ending_in_a_multibyte_character_rejects_the_record() {
    let server = TestServer::start().await;
    let records = tokio_stream::iter([with_multibyte_right_number()]);
    let summary = server.pledges().await.import_pledges(records).await.unwrap().into_inner();
    assert_eq!((summary.received, summary.rejected), (1, 1));
    let rejection = &summary.rejections[0];
    let fields: Vec<&str> = rejection.field_violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!((rejection.reason.as_str(), fields), ("INVALID_FIELDS", vec!["pledge.rights[0].number"]));
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Generation: one vocabulary of random choices for every target.

/// One random choice. Each field a builder fills takes the next atom and reads the part it needs:
/// a string field its text, a number or enum its number, presence and lengths its pick.
#[derive(Debug, Clone)]
struct Atom {
    text: String,
    number: i64,
    pick: u8,
}

/// Pieces of valid and nearly valid values, so that arbitrary text also lands near the rules.
const FRAGMENTS: &[&str] = &[
    "ZL",
    "CN",
    "2019",
    "1",
    "0123456",
    "201811564288",
    ".",
    "X",
    "x",
    "é",
    "中",
    "😀",
    " ",
    "\t",
    "\u{0}",
    "\u{200b}",
    "\u{feff}",
    "-",
    "330108",
    "330100",
    "330000",
    "441900",
    "91330100716105852F",
    "914403001922038216",
    "2019-06-05",
    "2020-02-29",
    "9999-12-31",
    "0.01",
    "15000000.00",
    "1000000000000.01",
    "1e6",
    "IPL-",
    "ipl_",
    "Bearer ",
    "SR",
    "国作登字",
    "\\",
    "\"",
    "{",
    "%",
    "\n",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        2 => "[ -~]{0,24}",
        3 => prop::collection::vec(prop::sample::select(FRAGMENTS), 0..6).prop_map(|f| f.concat()),
        1 => "[0-9A-Z. é中-]{0,20}",
    ]
}

fn atom() -> impl Strategy<Value = Atom> {
    let number = prop_oneof![4 => -3i64..12, 2 => any::<i64>(), 1 => Just(i64::from(i32::MAX)), 1 => Just(-1i64)];
    (text(), number, any::<u8>()).prop_map(|(text, number, pick)| Atom { text, number, pick })
}

/// A change to one field slot of a valid request (depth first over every field of every set
/// message, set or not): cleared, repeated, or replaced by the atom's value.
#[derive(Debug, Clone)]
struct Mutation {
    at: Index,
    atom: Atom,
}

/// A request body: built from atoms alone, or a valid request of its type with a few mutations
/// (none: the valid request itself, for the ledger's rules and every caller's scope).
#[derive(Debug, Clone)]
enum Body {
    Arbitrary(Vec<Atom>),
    Mutated { base: Index, mutations: Vec<Mutation> },
}

fn body() -> impl Strategy<Value = Body> {
    let mutation = (any::<Index>(), atom()).prop_map(|(at, atom)| Mutation { at, atom });
    prop_oneof![
        2 => prop::collection::vec(atom(), 0..ATOMS_MAX).prop_map(Body::Arbitrary),
        3 => (any::<Index>(), prop::collection::vec(mutation, 1..3))
            .prop_map(|(base, mutations)| Body::Mutated { base, mutations }),
        1 => any::<Index>().prop_map(|base| Body::Mutated { base, mutations: Vec::new() }),
    ]
}

/// The atoms of one message, taken in order.
struct Atoms<'a> {
    atoms: &'a [Atom],
    next: usize,
}

impl<'a> Atoms<'a> {
    fn take(&mut self) -> Option<&'a Atom> {
        let atom = self.atoms.get(self.next)?;
        self.next += 1;
        Some(atom)
    }
}

/// A message of type `descriptor`, every field from the next atom (a pick divisible by 4 leaves
/// it absent), nested messages recursively.
fn build(descriptor: &MessageDescriptor, atoms: &mut Atoms, depth: usize) -> DynamicMessage {
    let mut message = DynamicMessage::new(descriptor.clone());
    for field in descriptor.fields() {
        let Some(atom) = atoms.take() else { break };
        if atom.pick % 4 == 0 || field.is_map() {
            continue;
        }
        let value = if field.is_list() {
            let n = usize::from(atom.pick) % LIST_LEN_MAX;
            Value::List((0..n).filter_map(|_| value(&field.kind(), atoms.take()?, atoms, depth)).collect())
        } else {
            match value(&field.kind(), atom, atoms, depth) {
                Some(v) => v,
                None => continue,
            }
        };
        message.set_field(&field, value);
    }
    message
}

fn value(kind: &Kind, atom: &Atom, atoms: &mut Atoms, depth: usize) -> Option<Value> {
    Some(match kind {
        Kind::String => Value::String(atom.text.clone()),
        Kind::Bytes => Value::Bytes(atom.text.clone().into_bytes().into()),
        Kind::Bool => Value::Bool(atom.pick % 2 == 1),
        Kind::Enum(_) => Value::EnumNumber(atom.number as i32),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(atom.number as i32),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(atom.number),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(atom.number as u32),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(atom.number as u64),
        Kind::Float => Value::F32(atom.number as f32),
        Kind::Double => Value::F64(atom.number as f64),
        Kind::Message(m) if depth < DEPTH_MAX => Value::Message(build(m, atoms, depth + 1)),
        Kind::Message(_) => return None,
    })
}

fn slots(message: &DynamicMessage) -> usize {
    message
        .fields()
        .map(|(_, value)| match value {
            Value::Message(inner) => slots(inner),
            Value::List(items) => items.iter().map(|i| if let Value::Message(m) = i { slots(m) } else { 0 }).sum(),
            _ => 0,
        })
        .sum::<usize>()
        + message.descriptor().fields().len()
}

/// Applies `atom` to slot `*target` of `message`; true once applied.
fn mutate_at(message: &mut DynamicMessage, target: &mut usize, atom: &Atom) -> bool {
    for field in message.descriptor().fields() {
        if *target == 0 {
            replace(message, &field, atom);
            return true;
        }
        *target -= 1;
        if !message.has_field(&field) {
            continue;
        }
        let applied = match message.get_field_mut(&field) {
            Value::Message(inner) => mutate_at(inner, target, atom),
            Value::List(items) => items.iter_mut().any(|item| match item {
                Value::Message(inner) => mutate_at(inner, target, atom),
                _ => false,
            }),
            _ => false,
        };
        if applied {
            return true;
        }
    }
    false
}

fn replace(message: &mut DynamicMessage, field: &FieldDescriptor, atom: &Atom) {
    if field.is_map() {
        return;
    }
    match atom.pick % 4 {
        0 => message.clear_field(field),
        1 if field.is_list() => {
            if let Value::List(items) = message.get_field_mut(field)
                && let Some(last) = items.last().cloned()
            {
                let n = if atom.pick >= 250 { LIST_LEN_HUGE } else { usize::from(atom.pick) % LIST_LEN_MAX };
                items.extend(std::iter::repeat_n(last, n));
            }
        }
        _ => {
            let mut atoms = Atoms { atoms: std::slice::from_ref(atom), next: 0 };
            if let Some(v) = value(&field.kind(), atom, &mut atoms, DEPTH_MAX - 1) {
                message.set_field(field, if field.is_list() { Value::List(vec![v]) } else { v });
            }
        }
    }
}

/// The message `body` describes, of type `descriptor`; `bases` are valid messages of any types.
fn message(descriptor: &MessageDescriptor, body: &Body, bases: &[DynamicMessage]) -> DynamicMessage {
    match body {
        Body::Arbitrary(atoms) => build(descriptor, &mut Atoms { atoms, next: 0 }, 0),
        Body::Mutated { base, mutations } => {
            let valid: Vec<&DynamicMessage> = bases.iter().filter(|b| b.descriptor() == *descriptor).collect();
            let mut message = if valid.is_empty() {
                DynamicMessage::new(descriptor.clone())
            } else {
                valid[base.index(valid.len())].clone()
            };
            for m in mutations {
                let slots = slots(&message);
                if slots > 0 {
                    mutate_at(&mut message, &mut m.at.index(slots), &m.atom);
                }
            }
            message
        }
    }
}

/// Ids of the records a black-box run starts with (placeholders in-process).
struct Ids {
    pledge: String,
    line: String,
    victim: String,
}

fn dynamic<M: Message>(name: &str, message: &M) -> DynamicMessage {
    DynamicMessage::decode(protojson::descriptor(name), message.encode_to_vec().as_slice()).unwrap()
}

/// One valid request of every type (two registrations), around the records of `ids`.
fn bases(ids: &Ids) -> Vec<DynamicMessage> {
    let mut on_line = pledge("330108", "100.00");
    on_line.credit_line_id = ids.line.clone();
    let trademark = pb::Right {
        kind: pb::RightKind::Trademark as i32,
        number: format!("{}", 1_000_000 + unique()),
        title: "A mark".into(),
        expires_on: "2030-01-01".into(),
        ..Default::default()
    };
    on_line.rights.push(trademark);
    let id = || ids.pledge.clone();
    vec![
        dynamic("RegisterPledgeRequest", &register(pledge("330108", "100.00"))),
        dynamic("RegisterPledgeRequest", &register(on_line)),
        dynamic("GetPledgeRequest", &pb::GetPledgeRequest { id: id() }),
        dynamic(
            "ListPledgesRequest",
            &pb::ListPledgesRequest {
                page_size: 5,
                region_code: "330100".into(),
                pledgee_credit_code: BANK_A.into(),
                right_number: invention_patent(1),
                status: pb::PledgeStatus::Active as i32,
                ..Default::default()
            },
        ),
        dynamic(
            "ChangePledgeRequest",
            &pb::ChangePledgeRequest {
                request_id: request_id(),
                id: id(),
                secured_amount: "90.00".into(),
                debt_term_end: "2022-06-30".into(),
                reason: "partial repayment".into(),
                effective_on: "2021-01-01".into(),
            },
        ),
        dynamic("ReleasePledgeRequest", &release(id(), "2022-06-01")),
        dynamic("GetPledgeHistoryRequest", &pb::GetPledgeHistoryRequest { id: id(), ..Default::default() }),
        dynamic("CreateCreditLineRequest", &line("330100", "1000000.00", BANK_A)),
        dynamic("GetCreditLineRequest", &pb::GetCreditLineRequest { id: ids.line.clone() }),
        dynamic(
            "ListCreditLinesRequest",
            &pb::ListCreditLinesRequest {
                page_size: 5,
                region_code: "330000".into(),
                bank_credit_code: BANK_A.into(),
                ..Default::default()
            },
        ),
        dynamic(
            "GetExposureRequest",
            &pb::GetExposureRequest {
                region_code: "330000".into(),
                group_by: pb::ExposureGroupBy::Pledgee as i32,
                as_of: "2020-12-31".into(),
            },
        ),
        dynamic(
            "GetStatisticsRequest",
            &pb::GetStatisticsRequest {
                region_code: "330100".into(),
                from: "2019-01-01".into(),
                to: "2019-12-31".into(),
                group_by: pb::ExposureGroupBy::ChildRegion as i32,
                inclusive_threshold: "20000000.00".into(),
                unit: pb::AmountUnit::TenThousandYuan as i32,
                right_kinds: vec![pb::RightKind::Trademark as i32],
            },
        ),
        dynamic(
            "CreateTokenRequest",
            &pb::CreateTokenRequest {
                name: format!("fuzz-made-{}", unique()),
                role: pb::TokenRole::Office as i32,
                credit_code: String::new(),
                region_code: "330108".into(),
            },
        ),
        dynamic("ListTokensRequest", &pb::ListTokensRequest { page_size: 3, page_token: String::new() }),
        dynamic("RevokeTokenRequest", &pb::RevokeTokenRequest { name: ids.victim.clone() }),
        dynamic("WatchEventsRequest", &pb::WatchEventsRequest { from_sequence: 2 }),
        // The risk side's writes whose rules changed with rules 1: a right's state (standing,
        // dates), its withdrawal, a claim (its filing day).
        dynamic(
            "RecordRightRequest",
            &pb::RecordRightRequest {
                request_id: request_id(),
                right_kind: pb::RightKind::InventionPatent as i32,
                right_number: invention_patent(1),
                state: Some(pb::RightState {
                    holder: Some(party("Holder Co", BANK_B)),
                    status: pb::RightStatus::InForce as i32,
                    status_since: china_day(-1),
                    ..Default::default()
                }),
            },
        ),
        dynamic(
            "WithdrawRightStateRequest",
            &pb::WithdrawRightStateRequest {
                request_id: request_id(),
                right_kind: pb::RightKind::InventionPatent as i32,
                right_number: invention_patent(1),
                record_time: Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 0 }),
                note: "recorded in error".into(),
            },
        ),
        dynamic(
            "FileClaimRequest",
            &pb::FileClaimRequest {
                request_id: request_id(),
                programme_id: ids.line.clone(),
                pledge_id: id(),
                filed_on: china_day(0),
            },
        ),
    ]
}

/// Every method of the ledger's services, from the descriptors the server is built from.
fn methods() -> Vec<MethodDescriptor> {
    let pool = protojson::pool();
    let services = pool.services().filter(|s| s.package_name() == "ipledger.v1");
    let methods: Vec<MethodDescriptor> = services.flat_map(|s| s.methods().collect::<Vec<_>>()).collect();
    assert!(methods.len() >= 17, "the proto declares 17 RPCs: {}", methods.len());
    methods
}

fn cases() -> u32 {
    std::env::var("IPLEDGER_FUZZ_CASES").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(CASES_DEFAULT)
}

/// A runner for `target`: failures are shrunk, printed and kept in its own regression file,
/// whose cases every later run replays first.
fn runner(target: &str, cases: u32) -> TestRunner {
    let file = format!("{}/tests/it/fuzz-regressions/{target}.txt", env!("CARGO_MANIFEST_DIR"));
    TestRunner::new(Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(Box::leak(file.into_boxed_str())))),
        ..Config::default()
    })
}

fn run<S: Strategy>(target: &str, cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    if let Err(e) = runner(target, cases).run(&strategy, test) {
        panic!("fuzz target {target}: {e}");
    }
}

// ---------------------------------------------------------------------------------------------
// In-process: the request parsers and the domain parsers.

/// Consumes a parser's answer, whatever it is: only a panic fails a case.
fn sink<T>(answer: T) {
    let _ = std::hint::black_box(answer);
}

fn decode<M: Message + Default>(message: &DynamicMessage) -> M {
    M::decode(message.encode_to_vec().as_slice()).unwrap()
}

/// Runs the parser the handler of `message`'s type runs first.
fn parse(message: &DynamicMessage) {
    match message.descriptor().name() {
        "RegisterPledgeRequest" => sink(convert::registration(&decode(message))),
        "ChangePledgeRequest" => sink(convert::change_command(&decode(message))),
        "ReleasePledgeRequest" => sink(convert::release_command(&decode(message))),
        "CreateCreditLineRequest" => sink(convert::credit_line_creation(&decode(message))),
        "ListPledgesRequest" => sink(convert::pledge_filter(&decode(message))),
        "ListCreditLinesRequest" => sink(convert::credit_line_filter(&decode(message))),
        "GetExposureRequest" => sink(convert::exposure_query(&decode(message))),
        "GetStatisticsRequest" => sink(convert::statistics_query(&decode(message))),
        "CreateTokenRequest" => sink(convert::token_request(&decode(message))),
        "ListTokensRequest" => sink(query::page_size(decode::<pb::ListTokensRequest>(message).page_size)),
        "RevokeTokenRequest" => sink(PrincipalName::parse(&decode::<pb::RevokeTokenRequest>(message).name)),
        "GetPledgeRequest" => sink(convert::id("id", &decode::<pb::GetPledgeRequest>(message).id)),
        "GetPledgeHistoryRequest" => sink(convert::id("id", &decode::<pb::GetPledgeHistoryRequest>(message).id)),
        "GetCreditLineRequest" => sink(convert::id("id", &decode::<pb::GetCreditLineRequest>(message).id)),
        "RecordRightRequest" => sink(convert::record_right(&decode(message))),
        "WithdrawRightStateRequest" => sink(convert::withdraw_right_state(&decode(message))),
        "GetRightRequest" => sink(convert::get_right(&decode(message))),
        "RecordDefaultRequest" => sink(convert::record_default(&decode(message))),
        "ResolveDefaultRequest" => sink(convert::resolve_default(&decode(message))),
        "RecordValuationRequest" => sink(convert::record_valuation(&decode(message))),
        "CreateProgrammeRequest" => sink(convert::create_programme(&decode(message))),
        "FileClaimRequest" => sink(convert::file_claim(&decode(message))),
        "DecideClaimRequest" => sink(convert::decide_claim(&decode(message))),
        "RecordPaymentRequest" => sink(convert::record_payment(&decode(message))),
        // Nothing to parse in-process (no field, or only a sequence number): black-box covers them.
        _ => {}
    }
}

/// Every parser of untrusted text.
fn parse_text(text: &str, number: i64) {
    sink(CreditCode::parse(text));
    for kind in RightKind::ALL {
        sink(RightNumber::parse(text, kind));
    }
    sink(query::right_number_any_kind(text));
    sink((Name::parse(text), Note::parse(text), Reason::parse(text)));
    sink(parse_date(text));
    sink(Money::parse_positive(text));
    sink((Region::parse(text), CountyCode::parse(text)));
    sink(RegistrationNumber::parse(text));
    sink((PrincipalName::parse(text), PrincipalName::parse_new(text), parse_given_token(text)));
    sink(convert::id("id", text));
    sink(query::page_size(number as i32));
}

#[test]
fn fuzz_request_parsers_in_process() {
    let cases = cases() * IN_PROCESS_CASES_FACTOR;
    let ids = Ids { pledge: request_id(), line: request_id(), victim: "fuzz-victim".into() };
    let bases = bases(&ids);
    let mut inputs: Vec<MessageDescriptor> = methods().iter().map(|m| m.input()).collect();
    inputs.sort_by(|a, b| a.full_name().cmp(b.full_name()));
    inputs.dedup();
    for input in inputs {
        let target = format!("parse-{}", input.name());
        run(&target, cases, body(), |body| {
            let message = message(&input, &body, &bases);
            parse(&message);
            // The JSON API's parser on the same request in proto3 JSON.
            if let Ok(json) = serde_json::to_string(&message) {
                sink(protojson::from_json::<()>(input.name(), &json));
            }
            Ok(())
        });
    }
    run("parse-text", cases, atom(), |atom| {
        parse_text(&atom.text, atom.number);
        Ok(())
    });
    let names: Vec<&str> = methods().iter().map(|m| m.input()).map(|d| d.name().to_owned()).map(leak).collect();
    run("parse-json", cases, (prop::sample::select(names), json()), |(name, json)| {
        sink(protojson::from_json::<()>(name, &json.to_string()));
        Ok(())
    });
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Arbitrary JSON, its object keys often the request messages' own field names.
fn json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value as J;
    let mut names: Vec<String> = Vec::new();
    for m in methods() {
        for f in m.input().fields() {
            names.extend([f.json_name().to_owned(), f.name().to_owned()]);
        }
    }
    names.extend(["pledgor", "rights", "creditCode", "number", "kind", "bank", "limit"].map(str::to_owned));
    let key = prop_oneof![3 => prop::sample::select(names), 1 => text()];
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::from),
        any::<i64>().prop_map(J::from),
        any::<f64>().prop_map(J::from),
        text().prop_map(J::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(J::Array),
            prop::collection::vec((key.clone(), inner), 0..6).prop_map(|kv| J::Object(kv.into_iter().collect())),
        ]
    })
}

// ---------------------------------------------------------------------------------------------
// Black-box: one server, every RPC, every kind of caller.

#[derive(Debug, Clone)]
enum Caller {
    Admin,
    Bank,
    Office,
    Nobody,
    /// An arbitrary `authorization` value (dropped when it is not a valid header value).
    Header(String),
}

fn caller() -> impl Strategy<Value = Caller> {
    let header = prop_oneof![
        "[ -~]{0,80}",
        text().prop_map(|t| format!("Bearer {t}")),
        "(Bearer|bearer|Basic|) ipl_[A-Za-z0-9_+/=-]{0,60}",
    ];
    prop_oneof![
        4 => Just(Caller::Admin),
        4 => Just(Caller::Bank),
        4 => Just(Caller::Office),
        1 => Just(Caller::Nobody),
        1 => header.prop_map(Caller::Header),
    ]
}

/// The principals of the black-box server, by their tokens.
struct Tokens {
    admin: String,
    bank: String,
    office: String,
}

impl Caller {
    fn authorization(&self, tokens: &Tokens) -> Option<Vec<u8>> {
        match self {
            Caller::Admin => Some(bearer(&tokens.admin)),
            Caller::Bank => Some(bearer(&tokens.bank)),
            Caller::Office => Some(bearer(&tokens.office)),
            Caller::Nobody => None,
            Caller::Header(value) => Some(value.clone().into_bytes()),
        }
    }
}

pub(crate) fn bearer(token: &str) -> Vec<u8> {
    format!("Bearer {token}").into_bytes()
}

fn request<T>(message: T, caller: &Caller, tokens: &Tokens) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(Duration::from_secs(EXCHANGE_TIMEOUT_S));
    let value = caller.authorization(tokens).and_then(|v| MetadataValue::<Ascii>::try_from(v.as_slice()).ok());
    if let Some(value) = value {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// A failed call is an answer when its code is one the error table gives callers and it carries
/// an ErrorInfo reason: never Unknown, Cancelled (a reset), Internal, DataLoss or Unavailable (the
/// server is healthy throughout).
fn refusal(what: &str, status: &tonic::Status) -> Result<(), TestCaseError> {
    let expected = matches!(
        status.code(),
        Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::ResourceExhausted
            | Code::FailedPrecondition
            | Code::Unauthenticated
            | Code::DeadlineExceeded
    );
    prop_assert!(expected, "{what}: {:?} {:?}", status.code(), status.message());
    let reason = status.get_error_details().error_info().map(|i| i.reason.clone()).unwrap_or_default();
    prop_assert!(!reason.is_empty(), "{what}: {:?} {:?} without an ErrorInfo reason", status.code(), status.message());
    Ok(())
}

/// Calls `method` with `messages` (the first alone unless it streams requests) as `caller`.
async fn call(
    channel: Channel,
    method: &MethodDescriptor,
    messages: Vec<DynamicMessage>,
    caller: &Caller,
    tokens: &Tokens,
) -> Result<(), TestCaseError> {
    let what = method.full_name().to_owned();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| TestCaseError::fail(format!("{what}: channel not ready: {e}")))?;
    let path = format!("/{}/{}", method.parent_service().full_name(), method.name()).parse().unwrap();
    let codec = tonic_prost::ProstCodec::<DynamicMessage, ()>::default();
    let first = messages.first().cloned().unwrap_or_else(|| DynamicMessage::new(method.input()));
    let result = match (method.is_client_streaming(), method.is_server_streaming()) {
        (false, false) => grpc.unary(request(first, caller, tokens), path, codec).await.map(drop),
        (true, false) => {
            let stream = tokio_stream::iter(messages);
            grpc.client_streaming(request(stream, caller, tokens), path, codec).await.map(drop)
        }
        (false, true) => match grpc.server_streaming(request(first, caller, tokens), path, codec).await {
            Err(status) => Err(status),
            Ok(response) => {
                let mut stream = response.into_inner();
                let mut ended = Ok(());
                for _ in 0..STREAM_MESSAGES_READ {
                    match tokio::time::timeout(Duration::from_millis(STREAM_WAIT_MS), stream.message()).await {
                        Ok(Ok(Some(()))) => {}
                        Ok(Err(status)) => {
                            ended = Err(status);
                            break;
                        }
                        Ok(Ok(None)) | Err(_) => break,
                    }
                }
                ended
            }
        },
        (true, true) => return Err(TestCaseError::fail(format!("{what}: no bidirectional RPC is expected"))),
    };
    tally(method.name(), &result.as_ref().map_or_else(|s| format!("{:?}", s.code()), |()| "Ok".to_owned()));
    match result {
        Ok(()) => Ok(()),
        Err(status) => refusal(&what, &status),
    }
}

/// Answers per target and code, printed after a run (`--nocapture`): how many inputs got past
/// validation to the ledger's rules and how many were answered OK.
static OUTCOMES: std::sync::Mutex<std::collections::BTreeMap<String, usize>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

fn tally(target: &str, outcome: &str) {
    *OUTCOMES.lock().unwrap().entry(format!("{target} {outcome}")).or_default() += 1;
}

static SERVER_PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts panics on the black-box server's threads (a panic a client never sees, in a spawned
/// feed or a blocking read, is still a finding); the usual report is still printed.
fn count_server_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name().is_some_and(|n| n.starts_with(SERVER_THREAD_NAME)) {
                SERVER_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

/// One call: who makes it, and its request (a stream of 0 or more for ImportPledges).
#[derive(Debug, Clone)]
struct GrpcCase {
    caller: Caller,
    bodies: Vec<Body>,
}

#[derive(Debug, Clone)]
struct HttpCase {
    method: HttpMethod,
    caller: Caller,
    content_type: Option<String>,
    body: HttpBody,
}

#[derive(Debug, Clone)]
enum HttpMethod {
    Offered(Index),
    /// Any bytes as service and method (percent-encoded: not always UTF-8 once decoded).
    Other(Vec<u8>, Vec<u8>),
}

#[derive(Debug, Clone)]
enum HttpBody {
    Bytes(Vec<u8>),
    Json(serde_json::Value),
    Shaped(Body),
}

fn http_case() -> impl Strategy<Value = HttpCase> {
    let services = ["ipledger.v1.PledgeService", "ipledger.v1.JournalService", "ipledger.v1.AdminService"];
    let name = |known: Vec<&'static str>| {
        prop_oneof![
            prop::sample::select(known).prop_map(|k| k.as_bytes().to_vec()),
            text().prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..16),
        ]
    };
    let other = (name(services.to_vec()), name(vec!["RegisterPledge", "WatchEvents", "GetPledge"]));
    let method = prop_oneof![4 => any::<Index>().prop_map(HttpMethod::Offered), 1 => other.prop_map(|(s, m)| HttpMethod::Other(s, m))];
    let content_type = prop_oneof![
        12 => Just(Some("application/json".to_owned())),
        1 => Just(Some("Application/JSON; charset=utf-8".to_owned())),
        1 => Just(None),
        1 => "[ -~]{0,30}".prop_map(Some),
    ];
    let body = prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..512).prop_map(HttpBody::Bytes),
        // Past the body limit.
        1 => (BODY_BYTES_MAX..2 * BODY_BYTES_MAX).prop_map(|n| HttpBody::Bytes(vec![b' '; n])),
        2 => json().prop_map(HttpBody::Json),
        3 => body().prop_map(HttpBody::Shaped),
    ];
    (method, caller(), content_type, body).prop_map(|(method, caller, content_type, body)| HttpCase {
        method,
        caller,
        content_type,
        body,
    })
}

/// Every byte but the unreserved ones percent-encoded: any bytes are one path segment.
fn segment(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "x".to_owned();
    }
    bytes
        .iter()
        .map(|&b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A header value as HTTP/1.1 can carry it (no control characters), else nothing.
fn header_value(bytes: Vec<u8>) -> Option<Vec<u8>> {
    bytes.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f)).then_some(bytes)
}

/// One JSON API call of the case: an HTTP answer, 200 with JSON or a Connect error body.
async fn http_exchange(
    addr: SocketAddr,
    case: &HttpCase,
    tokens: &Tokens,
    bases: &[DynamicMessage],
) -> Result<(), TestCaseError> {
    let offered = ipledger::http::gateway::METHODS;
    let (service, method) = match &case.method {
        HttpMethod::Offered(i) => {
            let (s, m) = offered[i.index(offered.len())];
            (s.to_owned(), m.to_owned())
        }
        HttpMethod::Other(s, m) => (String::from_utf8_lossy(s).into_owned(), String::from_utf8_lossy(m).into_owned()),
    };
    let body = match &case.body {
        HttpBody::Bytes(bytes) => bytes.clone(),
        HttpBody::Json(json) => json.to_string().into_bytes(),
        HttpBody::Shaped(body) => {
            let input = protojson::pool()
                .get_service_by_name(&service)
                .and_then(|s| s.methods().find(|m| m.name() == method))
                .map(|m| m.input());
            match input {
                // A request of the method's own type in proto3 JSON (when it has one).
                Some(input) => serde_json::to_vec(&message(&input, body, bases)).unwrap_or_default(),
                None => b"{}".to_vec(),
            }
        }
    };
    let mut headers = Vec::new();
    if let Some(ct) = case.content_type.clone().and_then(|c| header_value(c.into_bytes())) {
        headers.push(("content-type", ct));
    }
    if let Some(auth) = case.caller.authorization(tokens).and_then(header_value) {
        headers.push(("authorization", auth));
    }
    let path = match &case.method {
        HttpMethod::Offered(_) => format!("/api/{}/{}", segment(service.as_bytes()), segment(method.as_bytes())),
        HttpMethod::Other(s, m) => format!("/api/{}/{}", segment(s), segment(m)),
    };
    let what = format!("POST {path}");
    let (status, answer) = http_post(addr, &path, &headers, &body)
        .await
        .map_err(|e| TestCaseError::fail(format!("{what}: no HTTP answer: {e}")))?;
    tally("json-api", &status.to_string());
    if status == 200 {
        prop_assert!(answer.is_object(), "{what}: 200 with {answer}");
    } else {
        let code = answer["code"].as_str().unwrap_or_default();
        prop_assert!(!code.is_empty(), "{what}: HTTP {status} without a Connect error body: {answer}");
        let internal = ["unknown", "canceled", "internal", "data_loss", "unavailable"].contains(&code);
        prop_assert!(!internal, "{what}: HTTP {status} {answer}");
    }
    Ok(())
}

/// One HTTP/1.1 POST on a fresh connection, written byte for byte (any header or body bytes):
/// the status and the body as JSON (`null` when it is not JSON); an error when the connection
/// ends without a complete answer.
pub(crate) async fn http_post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, Vec<u8>)],
    body: &[u8],
) -> Result<(u16, serde_json::Value), String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut request = format!("POST {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n").into_bytes();
        for (name, value) in headers {
            request.extend_from_slice(format!("{name}: ").as_bytes());
            request.extend_from_slice(value);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
        request.extend_from_slice(body);
        stream.write_all(&request).await.map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(EXCHANGE_TIMEOUT_S), exchange)
        .await
        .map_err(|_| "no answer in time".to_owned())??;
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").ok_or("the connection closed without an answer")?;
    let head = String::from_utf8_lossy(&answer[..split]).to_ascii_lowercase();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or(format!("no status line: {head:?}"))?;
    let mut body = answer[split + 4..].to_vec();
    if head.lines().any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked")) {
        body = dechunk(&body).ok_or("a truncated chunked body")?;
    }
    Ok((status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)))
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

/// The black-box server, its principals and valid requests around its records.
async fn start_fixture() -> (TestServer, Tokens, Vec<DynamicMessage>) {
    let server = TestServer::start().await;
    let bank = server.token(&format!("fuzz-bank-{}", unique()), pb::TokenRole::Bank, BANK_A, "").await;
    let office = server.token(&format!("fuzz-office-{}", unique()), pb::TokenRole::Office, "", "330100").await;
    let victim = format!("fuzz-victim-{}", unique());
    server.token(&victim, pb::TokenRole::Office, "", "330108").await;
    let line_id = server.credit_lines().await.create_credit_line(line("330100", "1000000.00", BANK_A)).await;
    let mut pledges = server.pledges().await;
    let pledge_id = pledges.register_pledge(register(pledge("330108", "100.00"))).await.unwrap().into_inner().id;
    let ids = Ids { pledge: pledge_id, line: line_id.unwrap().into_inner().id, victim };
    let tokens = Tokens { admin: server.admin_token.clone(), bank, office };
    (server, tokens, bases(&ids))
}

/// One server for the whole run; every RPC, then the JSON API; then the server must be well.
#[test]
fn fuzz_every_rpc_and_the_json_api_black_box() {
    count_server_panics();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(SERVER_THREAD_NAME)
        .enable_all()
        .build()
        .unwrap();
    let (server, tokens, bases) = runtime.block_on(start_fixture());
    let channel = runtime.block_on(server.channel());
    let cases = cases();
    for method in methods() {
        let bodies = if method.is_client_streaming() { 0..STREAM_RECORDS_MAX + 1 } else { 1..2 };
        let strategy =
            (caller(), prop::collection::vec(body(), bodies)).prop_map(|(caller, bodies)| GrpcCase { caller, bodies });
        let target = format!("rpc-{}", method.name());
        run(&target, cases, strategy, |case| {
            let messages = case.bodies.iter().map(|b| message(&method.input(), b, &bases)).collect();
            runtime.block_on(call(channel.clone(), &method, messages, &case.caller, &tokens))
        });
    }
    run("json-api", cases * 4, http_case(), |case| {
        runtime.block_on(http_exchange(server.addr, &case, &tokens, &bases))
    });

    eprintln!("fuzz outcomes: {:#?}", OUTCOMES.lock().unwrap());
    assert_eq!(SERVER_PANICS.load(Ordering::SeqCst), 0, "the server panicked (see its report above)");
    runtime.block_on(async {
        let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
        let check = tonic_health::pb::HealthCheckRequest { service: String::new() };
        let serving = health.check(check).await.unwrap().into_inner().status;
        assert_eq!(serving, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
        let registered = server.pledges().await.register_pledge(register(pledge("330108", "100.00"))).await;
        assert_eq!(registered.unwrap().into_inner().version, 1);
        server.stop().await;
    });
}
