//! `ipledger certificate verify`: a bank checks a pledge certificate (the JSON of
//! `GetPledgeCertificate`) without a server, against the ledger's public key it trusts.

use ipledger::ledger::journal::{Event, hex};
use ipledger::ledger::signing::{PublicKey, parse_public_key};
use ipledger::ledger::transparency::{self, Certificate, Verified};
use std::path::PathBuf;

/// Bytes of a certificate file read at most: a pledge has at most 52 versions of a few kB each.
const CERTIFICATE_BYTES_MAX: u64 = 4 << 20;

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The certificate: the JSON `GetPledgeCertificate` returned (as grpcurl prints it).
    pub file: PathBuf,
    /// The ledger's public key you trust: 64 hex digits, or its `signing-key.pub`.
    #[arg(long)]
    pub key: String,
    /// A witness whose cosignature of the tree head must be there (64 hex digits or a file).
    #[arg(long = "witness-key")]
    pub witness_keys: Vec<String>,
}

/// Reads and checks the certificate; prints what it proves. `Err`: why it does not verify.
pub fn verify(args: &VerifyArgs) -> Result<(), String> {
    let trusted = parse_public_key(&args.key)?;
    let witnesses = args.witness_keys.iter().map(|k| parse_public_key(k)).collect::<Result<Vec<PublicKey>, _>>()?;
    let certificate = read(&args.file)?;
    let verified = transparency::verify_certificate(&certificate, &[trusted], &witnesses)?;
    print(&certificate, &verified);
    Ok(())
}

fn read(path: &PathBuf) -> Result<Certificate, String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(CERTIFICATE_BYTES_MAX).read_to_string(&mut text))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let pb: ipledger::proto::PledgeCertificate = ipledger::protojson::from_json("PledgeCertificate", &text)
        .map_err(|e| format!("{}: not a pledge certificate's JSON: {e}", path.display()))?;
    ipledger::grpc::convert::certificate_from_pb(&pb).map_err(|e| format!("{}: {e}", path.display()))
}

fn print(certificate: &Certificate, verified: &Verified) {
    let head = &certificate.head.signed;
    println!("pledge {}  registration {}", certificate.pledge_id, certificate.registration_number);
    for entry in &verified.entries {
        let at = chrono::DateTime::from_timestamp_micros(entry.at)
            .map(|t| t.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8")).to_rfc3339())
            .unwrap_or_default();
        println!("  entry {:>8}  {:<17}  {at}  by {}", entry.sequence, entry.event.name(), entry.principal);
        if let Event::PledgeRegistered { pledge } = &entry.event {
            let c = &pledge.content;
            println!("    pledgor  {} ({})", c.pledgor.name, c.pledgor.credit_code);
            println!("    pledgee  {} ({})", c.pledgee.name, c.pledgee.credit_code);
            println!("    secured  {} yuan, debt term {} to {}", c.secured_amount, c.debt_term_start, c.debt_term_end);
            for right in &c.rights {
                println!("    right    {} {}", right.number.as_str(), right.title);
            }
        }
    }
    let signed_at =
        chrono::DateTime::from_timestamp_micros(head.time_micros).map(|t| t.to_rfc3339()).unwrap_or_default();
    println!("tree size {}  root {}  signed {signed_at}", head.tree_size, hex(&head.root_hash));
    println!("digest {}", hex(&certificate.digest));
    match verified.witnesses.as_slice() {
        [] => println!("no witness cosignature"),
        names => println!("cosigned by {}", names.join(", ")),
    }
    println!("certificate verified: {} entries in the signed tree", verified.entries.len());
}
