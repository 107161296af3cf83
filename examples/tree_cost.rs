//! What the journal's Merkle tree costs the writer per entry: the leaf hash of the entry's stored
//! bytes and the tree's extension (`ledger::tree::Tail::push`, with the tiles and subtree hashes
//! it completes), measured over real registration entries as the workload generator makes them.
//! The target (issue 24): at most 2 µs per entry, against a write budget of tens of µs.
//!
//!   cargo run --release --example tree_cost -- --entries 1000000

use ipledger::domain::pledge::{Pledge, RegistrationNumber};
use ipledger::domain::principal::PrincipalName;
use ipledger::ledger::journal::{Event, Head, format, merkle};
use ipledger::ledger::tree::Tail;
use std::time::Instant;

fn main() {
    let entries: u64 = std::env::args()
        .skip_while(|a| a != "--entries")
        .nth(1)
        .map(|n| n.parse().expect("--entries N"))
        .unwrap_or(1_000_000);
    // Distinct registrations of realistic size, sealed as the writer seals them.
    let mut workload = ipledger::workload::Workload::new(1, 0);
    let principal = PrincipalName::parse("bank-a").expect("a valid name");
    let mut head = Head::default();
    let mut stored = Vec::with_capacity(4096);
    for i in 0..4096u64 {
        let request = ipledger::proto::RegisterPledgeRequest {
            request_id: uuid::Uuid::from_u128(u128::from(i) + 1).to_string(),
            pledge: Some(workload.pledge()),
        };
        let (_, content) = ipledger::grpc::convert::registration(&request).expect("the generator's pledges are valid");
        let number = RegistrationNumber::parse(&format!("R-{i}")).expect("a valid number");
        let pledge = Pledge::register(uuid::Uuid::now_v7(), number, content, principal.clone(), 1_700_000_000_000_000);
        let (_, sealed) = format::seal(
            head.sequence + 1,
            head.hash,
            1_700_000_000_000_000 + i as i64,
            &principal,
            None,
            Event::PledgeRegistered { pledge },
        );
        head = sealed.head();
        stored.push(sealed);
    }
    let bytes: usize = stored.iter().map(|s| s.bytes.len()).sum::<usize>() / stored.len();
    let mut tail = Tail::default();
    let mut ops = Vec::new();
    let mut written = 0usize;
    let started = Instant::now();
    for i in 0..entries {
        let leaf = merkle::leaf_hash(&stored[(i % 4096) as usize].bytes);
        tail.push(leaf, &mut ops);
        // What a group's batch carries to derived state: counted, then dropped as a commit would.
        written += ops.iter().map(|(k, v)| k.len() + op_len(v)).sum::<usize>();
        ops.clear();
    }
    let elapsed = started.elapsed();
    println!(
        "{entries} entries of {bytes} bytes: {:.3} µs per entry (leaf hash and extension), {:.1} bytes of tree stored per entry, root {}",
        elapsed.as_secs_f64() * 1e6 / entries as f64,
        written as f64 / entries as f64,
        ipledger::ledger::journal::hex(&tail.root()),
    );
}

fn op_len(op: &ipledger::store::Op) -> usize {
    match op {
        ipledger::store::Op::Put(value) => value.len(),
        _ => 0,
    }
}
