//! `ipledger import FILE`: streams a JSON-lines or CSV file of registrations to a server, with a
//! progress bar, a checkpoint file that makes an interrupted import resumable, and a final report
//! of every rejected line.
//!
//! Resuming never double counts: a record without a `requestId` gets one derived from its own
//! bytes (UUID v5), so a record sent twice is recognised by the server as a duplicate.

use super::{ClientError, Connect};
use futures::stream::{FuturesOrdered, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use ipledger::proto as pb;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// Records per ImportPledges stream: the server lists up to 1000 rejections per stream, so every
/// rejection of a chunk is reported.
const CHUNK_RECORDS: usize = 1000;
/// Streams in flight at once: enough to keep the writer's group commits full.
const STREAMS_IN_FLIGHT: usize = 4;

/// Rejected lines listed in the report at most; further ones are counted.
const REJECTIONS_LISTED_MAX: usize = 100_000;

const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6970_6c65_6467_6572_2d69_6d70_6f72_7400);

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// JSON lines (one RegisterPledgeRequest per line, as for grpcurl) or CSV with a header row
    /// (by the .csv extension).
    pub file: PathBuf,
    #[command(flatten)]
    pub connect: Connect,
    /// Start over instead of resuming from the checkpoint file (FILE.progress).
    #[arg(long)]
    pub restart: bool,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// Lines of the file fully acknowledged (a prefix of the file).
    pub lines_done: u64,
    pub registered: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// (line, reason, message)
    pub rejections: Vec<(u64, String, String)>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RequestJson {
    #[serde(default)]
    request_id: String,
    pledge: PledgeJson,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PartyJson {
    #[serde(default)]
    name: String,
    #[serde(default)]
    credit_code: String,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RightJson {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    number: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    expires_on: String,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PledgeJson {
    #[serde(default)]
    registration_number: String,
    pledgor: Option<PartyJson>,
    pledgee: Option<PartyJson>,
    #[serde(default)]
    county_code: String,
    #[serde(default)]
    secured_amount: String,
    #[serde(default)]
    debt_term_start: String,
    #[serde(default)]
    debt_term_end: String,
    #[serde(default)]
    registered_on: String,
    #[serde(default)]
    rights: Vec<RightJson>,
    #[serde(default)]
    credit_line_id: String,
}

fn kind(name: &str) -> i32 {
    pb::RightKind::from_str_name(name.trim()).map_or(0, |k| k as i32)
}

fn party(p: Option<PartyJson>) -> Option<pb::Party> {
    p.map(|p| pb::Party { name: p.name, credit_code: p.credit_code })
}

fn from_json(line: &str) -> Result<pb::RegisterPledgeRequest, String> {
    let r: RequestJson = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let p = r.pledge;
    Ok(pb::RegisterPledgeRequest {
        request_id: r.request_id,
        pledge: Some(pb::Pledge {
            registration_number: p.registration_number,
            pledgor: party(p.pledgor),
            pledgee: party(p.pledgee),
            county_code: p.county_code,
            secured_amount: p.secured_amount,
            debt_term_start: p.debt_term_start,
            debt_term_end: p.debt_term_end,
            registered_on: p.registered_on,
            rights: p
                .rights
                .into_iter()
                .map(|r| pb::Right {
                    kind: kind(&r.kind),
                    number: r.number,
                    title: r.title,
                    expires_on: r.expires_on,
                    ..Default::default()
                })
                .collect(),
            credit_line_id: p.credit_line_id,
            ..Default::default()
        }),
    })
}

/// CSV columns (by header name): requestId, registrationNumber, pledgorName, pledgorCreditCode,
/// pledgeeName, pledgeeCreditCode, countyCode, securedAmount, debtTermStart, debtTermEnd,
/// registeredOn, rights (`KIND:NUMBER[:EXPIRES_ON[:TITLE]]` separated by `;`; an empty or missing
/// EXPIRES_ON leaves the expiry to the ledger), creditLineId.
fn from_csv(headers: &csv::StringRecord, record: &csv::StringRecord) -> Result<pb::RegisterPledgeRequest, String> {
    let field = |name: &str| -> String {
        headers.iter().position(|h| h.trim() == name).and_then(|i| record.get(i)).unwrap_or_default().trim().to_owned()
    };
    let mut rights = Vec::new();
    for spec in field("rights").split(';').filter(|s| !s.trim().is_empty()) {
        let parts: Vec<&str> = spec.splitn(4, ':').collect();
        if parts.len() < 2 {
            return Err(format!("right {spec:?} must be KIND:NUMBER[:EXPIRES_ON[:TITLE]]"));
        }
        rights.push(pb::Right {
            kind: kind(parts[0]),
            number: parts[1].to_owned(),
            expires_on: parts.get(2).map(|t| (*t).to_owned()).unwrap_or_default(),
            title: parts.get(3).map(|t| (*t).to_owned()).unwrap_or_default(),
            ..Default::default()
        });
    }
    Ok(pb::RegisterPledgeRequest {
        request_id: field("requestId"),
        pledge: Some(pb::Pledge {
            registration_number: field("registrationNumber"),
            pledgor: Some(pb::Party { name: field("pledgorName"), credit_code: field("pledgorCreditCode") }),
            pledgee: Some(pb::Party { name: field("pledgeeName"), credit_code: field("pledgeeCreditCode") }),
            county_code: field("countyCode"),
            secured_amount: field("securedAmount"),
            debt_term_start: field("debtTermStart"),
            debt_term_end: field("debtTermEnd"),
            registered_on: field("registeredOn"),
            rights,
            credit_line_id: field("creditLineId"),
            ..Default::default()
        }),
    })
}

/// One record of the file: its line number and the request, or why it could not be read.
type Record = (u64, Result<pb::RegisterPledgeRequest, String>);

fn with_request_id(mut request: pb::RegisterPledgeRequest, raw: &[u8]) -> pb::RegisterPledgeRequest {
    if request.request_id.trim().is_empty() {
        request.request_id = uuid::Uuid::new_v5(&NAMESPACE, raw).to_string();
    }
    request
}

/// The records of the file with their line numbers, read lazily: a file of millions of lines is
/// never held in memory.
fn records(path: &Path) -> Result<Box<dyn Iterator<Item = Result<Record, ClientError>>>, ClientError> {
    let csv_file = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if csv_file {
        let mut reader =
            csv::ReaderBuilder::new().flexible(true).from_path(path).map_err(|e| ClientError::Usage(e.to_string()))?;
        let headers = reader.headers().map_err(|e| ClientError::Usage(e.to_string()))?.clone();
        Ok(Box::new(reader.into_records().map(move |record| {
            Ok(match record {
                Ok(r) => {
                    let line = r.position().map_or(0, |p| p.line());
                    let raw = r.iter().collect::<Vec<_>>().join("\u{1f}");
                    (line, from_csv(&headers, &r).map(|q| with_request_id(q, raw.as_bytes())))
                }
                Err(e) => (e.position().map_or(0, |p| p.line()), Err(e.to_string())),
            })
        })))
    } else {
        let reader = std::io::BufReader::new(std::fs::File::open(path)?);
        Ok(Box::new(reader.lines().enumerate().filter_map(|(i, line)| match line {
            Err(e) => Some(Err(ClientError::Io(e))),
            Ok(line) if line.trim().is_empty() => None,
            Ok(line) => {
                let trimmed = line.trim();
                Some(Ok(((i + 1) as u64, from_json(trimmed).map(|q| with_request_id(q, trimmed.as_bytes())))))
            }
        })))
    }
}

fn progress_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".progress");
    PathBuf::from(name)
}

fn save(path: &Path, progress: &Progress) -> Result<(), ClientError> {
    // Write then rename: a kill leaves the old checkpoint or the new one, never half of one.
    let tmp = path.with_extension("progress.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(serde_json::to_string(progress).map_err(std::io::Error::other)?.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

// Longer than ~70 lines: the import's loop: read, batch, send, resume after a failure, summarise;
// one sequence over one stream.
pub async fn run(args: ImportArgs) -> Result<Progress, ClientError> {
    let checkpoint = progress_path(&args.file);
    let mut progress: Progress = if args.restart {
        Progress::default()
    } else {
        std::fs::read_to_string(&checkpoint).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
    };
    // One quick pass to count, for the progress bar; then the records stream in chunks.
    let mut total = 0u64;
    let mut acknowledged = 0u64;
    for record in records(&args.file)? {
        let (line, _) = record?;
        total += 1;
        if line <= progress.lines_done {
            acknowledged += 1;
        }
    }
    if acknowledged > 0 {
        eprintln!("resuming after line {} ({acknowledged} records already acknowledged)", progress.lines_done);
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {human_pos}/{human_len} records  {per_sec:0}  ETA {eta}  {msg}")
            .map_err(|e| ClientError::Usage(e.to_string()))?,
    );
    bar.set_position(acknowledged);
    // The records of an earlier run are not this run's rate: measure from here.
    bar.tick();
    bar.reset_eta();
    let client = args.connect.pledges().await?;
    let mut in_flight = FuturesOrdered::new();
    let lines_done = progress.lines_done;
    let mut pending = records(&args.file)?.filter(move |r| r.as_ref().map_or(true, |(line, _)| *line > lines_done));
    let mut chunks = std::iter::from_fn(move || {
        let chunk: Result<Vec<Record>, ClientError> = pending.by_ref().take(CHUNK_RECORDS).collect();
        match chunk {
            Ok(c) if c.is_empty() => None,
            other => Some(other),
        }
    });
    loop {
        while in_flight.len() < STREAMS_IN_FLIGHT {
            let Some(chunk) = chunks.next() else { break };
            let chunk = chunk?;
            let mut client = client.clone();
            in_flight.push_back(async move {
                let mut local = Vec::new();
                let mut sent = Vec::new();
                for (line, record) in &chunk {
                    match record {
                        Ok(request) => sent.push((*line, request.clone())),
                        Err(message) => local.push((*line, "MALFORMED_RECORD".to_owned(), message.clone())),
                    }
                }
                let lines: Vec<u64> = sent.iter().map(|(l, _)| *l).collect();
                let summary =
                    client.import_pledges(tokio_stream::iter(sent.into_iter().map(|(_, r)| r))).await?.into_inner();
                let last_line = chunk.last().map_or(0, |(l, _)| *l);
                Ok::<_, ClientError>((chunk.len() as u64, last_line, lines, summary, local))
            });
        }
        let Some(done) = in_flight.next().await else { break };
        let (records_n, last_line, lines, summary, local) = done?;
        progress.registered += summary.registered;
        progress.duplicates += summary.duplicates;
        progress.rejected += summary.rejected + local.len() as u64;
        let room = REJECTIONS_LISTED_MAX.saturating_sub(progress.rejections.len());
        progress.rejections.extend(local.into_iter().take(room));
        for r in summary.rejections {
            if progress.rejections.len() >= REJECTIONS_LISTED_MAX {
                break;
            }
            let line = lines.get(r.index as usize).copied().unwrap_or(0);
            let detail =
                r.field_violations.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>();
            let message = if detail.is_empty() { r.message } else { detail.join("; ") };
            progress.rejections.push((line, r.reason, message));
        }
        progress.lines_done = last_line;
        save(&checkpoint, &progress)?;
        bar.inc(records_n);
        bar.set_message(format!(
            "{} registered, {} duplicates, {} rejected",
            progress.registered, progress.duplicates, progress.rejected
        ));
    }
    bar.finish();
    drop(client);
    progress.rejections.sort();
    let _ = std::fs::remove_file(&checkpoint);
    Ok(progress)
}

pub fn report(progress: &Progress) {
    for (line, reason, message) in &progress.rejections {
        println!("line {line}: {reason}: {message}");
    }
    let unlisted = progress.rejected.saturating_sub(progress.rejections.len() as u64);
    if unlisted > 0 {
        println!("({unlisted} more rejected lines not listed: at most {REJECTIONS_LISTED_MAX} are)");
    }
    println!("{} registered, {} duplicates, {} rejected", progress.registered, progress.duplicates, progress.rejected);
}

/// The parsers of `ipledger import` on arbitrary input: every file, line and record is read as a
/// request or refused with a reason, never a panic. `IPLEDGER_FUZZ_CASES` sets the cases, as for
/// the harness in `tests/it/fuzz.rs`.
#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Cases per property when `IPLEDGER_FUZZ_CASES` is not set: a few seconds in a debug build.
    const CASES_DEFAULT: u32 = 256;
    /// Records read from one generated file at most (a file of a few KiB has fewer).
    const RECORDS_READ_MAX: usize = 10_000;

    fn cases() -> u32 {
        std::env::var("IPLEDGER_FUZZ_CASES").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(CASES_DEFAULT)
    }

    /// Reads every record of a file holding `bytes`, as the import does: Ok or Err per record.
    fn read(name: &str, bytes: &[u8]) -> usize {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        match records(&path) {
            Ok(records) => records.take(RECORDS_READ_MAX).count(),
            Err(_) => 0,
        }
    }

    /// Text near the fields' rules as well as any UTF-8.
    fn text() -> impl Strategy<Value = String> {
        let fragments = prop::sample::select(vec![
            "ZL",
            "201811564288",
            ".X",
            "é",
            "中",
            ":",
            ";",
            ",",
            "\"",
            "INVENTION_PATENT",
            "TRADEMARK",
            "2030-01-01",
            "330108",
            "91330100716105852F",
            "100.00",
            " ",
            "\n",
            "\r",
            "\u{0}",
        ]);
        prop_oneof![any::<String>(), prop::collection::vec(fragments, 0..8).prop_map(|f| f.concat())]
    }

    /// A JSON line shaped like a record, every value arbitrary text, sometimes of the wrong type.
    fn record_json() -> impl Strategy<Value = serde_json::Value> {
        let value = prop_oneof![
            4 => text().prop_map(serde_json::Value::from),
            1 => any::<i64>().prop_map(serde_json::Value::from),
            1 => Just(serde_json::Value::Null),
        ];
        let party = (value.clone(), value.clone()).prop_map(|(n, c)| serde_json::json!({"name": n, "creditCode": c}));
        let right = (value.clone(), value.clone(), value.clone(), value.clone())
            .prop_map(|(k, n, t, e)| serde_json::json!({"kind": k, "number": n, "title": t, "expiresOn": e}));
        let dates = (value.clone(), value.clone(), value.clone());
        let pledge = (party.clone(), party, value.clone(), value.clone(), dates, prop::collection::vec(right, 0..4))
            .prop_map(|(pledgor, pledgee, county, amount, (start, end, on), rights)| {
                serde_json::json!({"pledgor": pledgor, "pledgee": pledgee, "countyCode": county,
                    "securedAmount": amount, "debtTermStart": start, "debtTermEnd": end, "registeredOn": on,
                    "rights": rights})
            });
        (value, pledge).prop_map(|(id, pledge)| serde_json::json!({"requestId": id, "pledge": pledge}))
    }

    const COLUMNS: &[&str] = &[
        "requestId",
        "registrationNumber",
        "pledgorName",
        "pledgorCreditCode",
        "pledgeeName",
        "pledgeeCreditCode",
        "countyCode",
        "securedAmount",
        "debtTermStart",
        "debtTermEnd",
        "registeredOn",
        "rights",
        "creditLineId",
    ];

    /// A CSV file: a header of known and unknown columns, rows of any length with any cells.
    fn csv_file() -> impl Strategy<Value = Vec<u8>> {
        let column = prop_oneof![3 => prop::sample::select(COLUMNS).prop_map(str::to_owned), 1 => text()];
        let rows = prop::collection::vec(prop::collection::vec(text(), 0..16), 0..4);
        (prop::collection::vec(column, 0..16), rows).prop_map(|(header, rows)| {
            let mut writer = csv::WriterBuilder::new().flexible(true).from_writer(Vec::new());
            writer.write_record(&header).unwrap();
            for row in rows {
                writer.write_record(&row).unwrap();
            }
            writer.into_inner().unwrap()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

        #[test]
        fn any_bytes_as_json_lines_or_csv(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            read("records.jsonl", &bytes);
            read("records.csv", &bytes);
        }

        #[test]
        fn any_line(line in text()) {
            let _ = from_json(&line);
        }

        #[test]
        fn record_shaped_lines(record in record_json()) {
            let line = record.to_string();
            let _ = from_json(&line);
            prop_assert_eq!(read("records.jsonl", line.as_bytes()), 1);
        }

        #[test]
        fn record_shaped_csv(file in csv_file()) {
            read("records.csv", &file);
        }
    }

    #[test]
    fn records_are_read_or_refused_line_by_line() {
        let right = "INVENTION_PATENT:ZL201811564288.X:2038-12-01:A method";
        let csv = format!(
            "countyCode,rights\n330108,{right}\n330108,TRADEMARK\n330108,é:ZLé:é:é\n330108,TRADEMARK:1;COPYRIGHT:2019SR1:\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.csv");
        std::fs::write(&path, csv).unwrap();
        let read: Vec<(u64, Result<usize, String>)> = records(&path)
            .unwrap()
            .map(|r| r.unwrap())
            .map(|(line, request)| (line, request.map(|r| r.pledge.unwrap_or_default().rights.len())))
            .collect();
        let refused = "right \"TRADEMARK\" must be KIND:NUMBER[:EXPIRES_ON[:TITLE]]".to_owned();
        // Rights without an expiry date (the ledger bounds or leaves it) are read as given.
        assert_eq!(read, vec![(2, Ok(1)), (3, Err(refused)), (4, Ok(1)), (5, Ok(2))]);
    }
}
