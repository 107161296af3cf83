//! Every reason a request can be refused for: the UPPER_SNAKE `reason` of the `ErrorInfo` clients
//! branch on, the gRPC status it comes with, and when it happens. One enum, so that a refusal
//! cannot carry a reason nobody documented: `docs/errors.md`'s table is generated from it (a test
//! in `tests/house.rs` fails when the file and the enum differ), and `grpc::status` checks that
//! each reason's status is the one it maps the error to.

/// Declares `Reason` with, per variant, its gRPC status name and its documentation (the "when").
macro_rules! reasons {
    ($( $(#[doc = $doc:literal])+ $variant:ident => $code:literal, )+) => {
        /// Why a request was refused, as clients see it (`ErrorInfo.reason`).
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $( $(#[doc = $doc])+ $variant, )+
        }

        impl Reason {
            /// Every reason, in the order of the documentation's table.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant),+];

            /// The name on the wire: `ErrorInfo.reason`.
            pub fn as_str(self) -> &'static str {
                match self { $(Reason::$variant => stringify!($variant),)+ }
            }

            /// The gRPC status code's name this reason comes with.
            pub fn code(self) -> &'static str {
                match self { $(Reason::$variant => $code,)+ }
            }

            /// When it happens: the variant's documentation, on one line.
            pub fn when(self) -> &'static str {
                match self { $(Reason::$variant => concat!($($doc, "\n"),+),)+ }
            }
        }
    };
}

reasons! {
    /// A malformed request: a `google.rpc.BadRequest` names every bad field (`pledge.rights[0].number`):
    /// missing fields, amounts not positive or with more than 2 decimals, unknown or non-county
    /// region codes, bad dates or dates out of order, no rights or a right listed twice, check
    /// digits, an expiry beyond a right's statutory term, a right expired at registration, a
    /// registration dated after today in China; on the risk side, shares, tiers, dates and amounts
    /// out of their rules.
    INVALID_FIELDS => "INVALID_ARGUMENT",
    /// The debt term ends after one of the rights expires (its given date, or its statutory bound
    /// when the date is left out): INVALID_ARGUMENT for a new pledge's own dates,
    /// FAILED_PRECONDITION when a right's record or a change says so (metadata `expiresOn`).
    TERM_EXCEEDS_RIGHT_EXPIRY => "INVALID_ARGUMENT",
    /// The right's record names none of the pledgors as its holder (metadata `rightKind`,
    /// `rightNumber`).
    PLEDGOR_NOT_HOLDER => "FAILED_PRECONDITION",
    /// The right is co-owned and some of the holders its record names are not among the pledge's
    /// pledgors (`pledgor` and `coPledgors`): a co-owned right is pledged by all its owners
    /// (metadata `missingCoOwners`: their credit codes, comma-separated).
    CO_OWNER_MISSING => "FAILED_PRECONDITION",
    /// The right's record says it lapsed, was invalidated or expired (metadata `status`).
    RIGHT_NOT_IN_FORCE => "FAILED_PRECONDITION",
    /// A court froze the right (metadata `caseNumber`).
    RIGHT_FROZEN => "FAILED_PRECONDITION",
    /// The right's record says an annual or renewal fee was unpaid on the registration date
    /// (metadata `dueOn`, `graceEndsOn`): unpaid fees are a ground of refusal.
    RIGHT_FEE_OVERDUE => "FAILED_PRECONDITION",
    /// The right's record says an invalidation request was under examination on the registration
    /// date and the registration does not say both parties accept it
    /// (`invalidationPendingAccepted`; metadata `requestNumber`, `filedOn`).
    RIGHT_INVALIDATION_PENDING => "FAILED_PRECONDITION",
    /// A right is in another active pledge (metadata `rightKind`, `rightNumber`; `pledgeId` only
    /// when the caller may read that pledge).
    RIGHT_ALREADY_PLEDGED => "FAILED_PRECONDITION",
    /// A right has been part of 64 pledges, released ones included: a registration beyond it is
    /// refused.
    RIGHT_PLEDGES_LIMIT_REACHED => "FAILED_PRECONDITION",
    /// The given registration number belongs to another pledge (metadata `registrationNumber`;
    /// `pledgeId` only when the caller may read that pledge).
    REGISTRATION_NUMBER_EXISTS => "FAILED_PRECONDITION",
    /// A change or release of a released pledge; a default or valuation recorded on one.
    PLEDGE_ALREADY_RELEASED => "FAILED_PRECONDITION",
    /// A change to the values the pledge already has; a right recorded with the state its record
    /// already has.
    NOTHING_TO_CHANGE => "FAILED_PRECONDITION",
    /// A pledge already has 200 changes.
    CHANGES_LIMIT_REACHED => "FAILED_PRECONDITION",
    /// The named credit line does not exist or the caller may not read it (the same answer, with
    /// no details).
    CREDIT_LINE_NOT_FOUND => "FAILED_PRECONDITION",
    /// The credit line lacks the available amount (metadata `creditLineId`, `available`,
    /// `requested`, to callers who may read the line).
    CREDIT_LINE_EXHAUSTED => "FAILED_PRECONDITION",
    /// The credit line belongs to another bank than the pledgee.
    CREDIT_LINE_BANK_MISMATCH => "FAILED_PRECONDITION",
    /// The credit line does not cover the pledge's county.
    CREDIT_LINE_REGION_MISMATCH => "FAILED_PRECONDITION",
    /// The credit line is not valid on the registration date.
    CREDIT_LINE_NOT_IN_FORCE => "FAILED_PRECONDITION",
    /// A second default on a pledge (metadata `defaultedOn`).
    PLEDGE_ALREADY_DEFAULTED => "FAILED_PRECONDITION",
    /// A resolution, or a claim, for a pledge with no default.
    PLEDGE_NOT_DEFAULTED => "FAILED_PRECONDITION",
    /// A second resolution of a default.
    DEFAULT_ALREADY_RESOLVED => "FAILED_PRECONDITION",
    /// A claim for a default whose loss is not known yet: record it, or resolve the default.
    LOSS_NOT_DETERMINED => "FAILED_PRECONDITION",
    /// A claim for a default whose loss is zero.
    NO_LOSS => "FAILED_PRECONDITION",
    /// A second claim for the pledge under the same programme while the first is not rejected
    /// (metadata `claimId`).
    CLAIM_EXISTS => "FAILED_PRECONDITION",
    /// The bank is not among the programme's eligible banks.
    BANK_NOT_ELIGIBLE => "FAILED_PRECONDITION",
    /// The pledge's county lies outside the programme's region.
    OUTSIDE_PROGRAMME_REGION => "FAILED_PRECONDITION",
    /// The loan was registered outside the programme's validity.
    LOAN_OUTSIDE_PROGRAMME_VALIDITY => "FAILED_PRECONDITION",
    /// The claim is filed before the programme's `validFrom`.
    PROGRAMME_NOT_YET_IN_FORCE => "FAILED_PRECONDITION",
    /// The claim is filed after the programme's `validTo`.
    PROGRAMME_EXPIRED => "FAILED_PRECONDITION",
    /// The loan (at the default) is above the programme's last tier (metadata `largestLoan`).
    LOAN_ABOVE_TIERS => "FAILED_PRECONDITION",
    /// The principal loss is above the loan.
    LOSS_EXCEEDS_LOAN => "FAILED_PRECONDITION",
    /// The bank's losses claimed under the programme that year, this one included, would pass the
    /// stop line's share of what it lent in the programme's region that year (metadata `year`,
    /// `bankLosses`, `bankLending`, `stopLine`).
    STOP_LINE_REACHED => "FAILED_PRECONDITION",
    /// Nothing is left of the programme's budget for the claim's year (metadata `year`,
    /// `budgetPerYear`, `committed`); with something left, the claim is filed and capped
    /// (`cappedByBudget`, `cappedBy` `BUDGET`).
    BUDGET_EXHAUSTED => "FAILED_PRECONDITION",
    /// The programme's cap per loan is used up by the fund parts of the pledge's claims under it
    /// not rejected (metadata `capPerLoan`, `fundOnLoan`); with something left, the claim is filed
    /// and capped (`cappedBy` `LOAN_CAP`).
    LOAN_CAP_REACHED => "FAILED_PRECONDITION",
    /// The programme's cap per borrower and year is used up by the fund parts of the claims on the
    /// pledgor's loans filed that year not rejected (metadata `year`, `capPerBorrowerPerYear`,
    /// `borrowerFund`); with something left, the claim is filed and capped (`cappedBy`
    /// `BORROWER_YEAR_CAP`).
    BORROWER_CAP_REACHED => "FAILED_PRECONDITION",
    /// A second decision on a claim (metadata `status`, `decidedOn`).
    CLAIM_ALREADY_DECIDED => "FAILED_PRECONDITION",
    /// A payment on a claim that is not approved.
    CLAIM_NOT_APPROVED => "FAILED_PRECONDITION",
    /// Payments beyond the fund's part (metadata `fund`, `paid`, `amount`).
    PAYMENT_EXCEEDS_COMPENSATION => "FAILED_PRECONDITION",
    /// An approval of a claim whose default's loss is no longer the claim's, or a payment while it
    /// is less (metadata `claimId`, `claimLoss`, `loss`): reject the claim and file it again.
    CLAIM_BASIS_CHANGED => "FAILED_PRECONDITION",
    /// A right already has 100 recorded states.
    RIGHT_STATES_LIMIT_REACHED => "FAILED_PRECONDITION",
    /// A withdrawal names a recorded state the right's record does not hold.
    RIGHT_STATE_NOT_FOUND => "FAILED_PRECONDITION",
    /// A pledge already has 50 valuations.
    VALUATIONS_LIMIT_REACHED => "FAILED_PRECONDITION",
    /// A pledge already has 10 claims.
    CLAIMS_LIMIT_REACHED => "FAILED_PRECONDITION",
    /// A claim already has 20 payments.
    PAYMENTS_LIMIT_REACHED => "FAILED_PRECONDITION",
    /// A region already runs 100 programmes.
    PROGRAMMES_LIMIT_REACHED => "FAILED_PRECONDITION",
    /// A region has more than 200,000 pledgee rows to rank (metadata `regionCode`, `rowsMax`): ask
    /// for a smaller region.
    EXPOSURE_TOO_LARGE => "FAILED_PRECONDITION",
    /// A token name already taken.
    PRINCIPAL_EXISTS => "FAILED_PRECONDITION",
    /// A revocation of a principal already revoked.
    PRINCIPAL_ALREADY_REVOKED => "FAILED_PRECONDITION",
    /// A client certificate binding already bound to a principal.
    CERTIFICATE_ALREADY_BOUND => "FAILED_PRECONDITION",
    /// A principal already has 64 certificate bindings.
    TOO_MANY_BINDINGS => "FAILED_PRECONDITION",
    /// A read asked to reflect a journal entry this node has not committed yet
    /// (`x-ipledger-min-sequence`; metadata `minSequence`): retry, or read from the writer.
    SEQUENCE_NOT_REACHED => "FAILED_PRECONDITION",
    /// A journal proof asked of more entries than one answer holds: ask from a later sequence.
    PROOF_TOO_LONG => "FAILED_PRECONDITION",
    /// A journal proof would pass entries the caller may not read.
    PROOF_NOT_READABLE => "FAILED_PRECONDITION",
    /// A tree head, proof or certificate asked of a tree larger than this node's (metadata
    /// `treeSize`, the node's): retry later, or ask the writer; or a certificate asked of a tree
    /// from before the pledge's registration.
    TREE_SIZE_NOT_REACHED => "FAILED_PRECONDITION",
    /// A cosignature by a key the server does not know as a witness's (`--witness`).
    WITNESS_UNKNOWN => "FAILED_PRECONDITION",
    /// A cosignature of a tree head that is not the server's: another root at that size (the
    /// witness saw another history), or a signature that does not verify.
    COSIGNATURE_INVALID => "FAILED_PRECONDITION",
    /// A restore into a data directory that is not empty.
    DATA_DIR_NOT_EMPTY => "FAILED_PRECONDITION",
    /// A restore into a journal that is not empty.
    JOURNAL_NOT_EMPTY => "FAILED_PRECONDITION",
    /// A dump whose signed head is not signed by the key the restore trusts.
    DUMP_NOT_TRUSTED => "FAILED_PRECONDITION",
    /// A journal entry that does not decode or does not hash to what it claims.
    ENTRY_CORRUPT => "FAILED_PRECONDITION",
    /// An entry of a dump or a shared journal that its rules, decided again, refuse.
    ENTRY_REFUSED => "FAILED_PRECONDITION",
    /// Entries whose hashes do not chain.
    JOURNAL_CHAIN_BROKEN => "FAILED_PRECONDITION",
    /// The journal differs from what this node applied (another history).
    JOURNAL_DIVERGENCE => "FAILED_PRECONDITION",
    /// A shared journal's group with no signature of the cluster's key: a follower does not apply it.
    GROUP_UNSIGNED => "FAILED_PRECONDITION",
    /// A shared journal's group whose signature does not verify under the cluster's key.
    GROUP_SIGNATURE_INVALID => "FAILED_PRECONDITION",
    /// A `requestId` the same principal used before with different content (request ids are per
    /// principal).
    REQUEST_ID_REUSED => "ALREADY_EXISTS",
    /// An unknown `id` (a `ResourceInfo` names it); `GetRight` of a right no office recorded.
    NOT_FOUND => "NOT_FOUND",
    /// No valid token or client certificate.
    UNAUTHENTICATED => "UNAUTHENTICATED",
    /// Outside the caller's scope (see the access table in docs/operations.md).
    PERMISSION_DENIED => "PERMISSION_DENIED",
    /// The write queue is full, or the caller's share of queued write bytes: back off and retry
    /// (a `RetryInfo` says when).
    WRITE_QUEUE_FULL => "RESOURCE_EXHAUSTED",
    /// Too many calls in flight, the server's or the caller's share (metadata `limit`, `scope`).
    TOO_MANY_REQUESTS => "RESOURCE_EXHAUSTED",
    /// Too many open streams, the server's or the caller's share (metadata `limit`, `scope`).
    TOO_MANY_STREAMS => "RESOURCE_EXHAUSTED",
    /// Too many change feeds watching, the server's or the caller's share (metadata `limit`,
    /// `scope`).
    TOO_MANY_WATCHERS => "RESOURCE_EXHAUSTED",
    /// The call ran past its deadline, the server's (`--call-timeout-ms`) or the client's own
    /// (`grpc-timeout`), whichever comes first: a write may still have committed (retry with the
    /// same `requestId` to learn its result).
    DEADLINE_EXCEEDED => "DEADLINE_EXCEEDED",
    /// A JSON API answer would exceed 64 MiB (metadata `bytesMax`): ask for a smaller page.
    RESPONSE_TOO_LARGE => "OUT_OF_RANGE",
    /// Shutting down, or the disk or the journal failed: nothing was written.
    UNAVAILABLE => "UNAVAILABLE",
    /// A write sent to a follower of a cluster (metadata `writer`: the writer's advertised address,
    /// when one holds the lease); nothing was written: send it to the writer.
    NOT_WRITER => "UNAVAILABLE",
    /// The journal could not tell whether the write was committed (its connection was lost during
    /// the commit and stayed lost): retry with the same `requestId`.
    OUTCOME_UNKNOWN => "UNAVAILABLE",
    /// A broken invariant or an unreadable record: a bug or corruption, never the caller's fault.
    INTERNAL => "INTERNAL",
}

impl Reason {
    /// `when` as one line of Markdown: the doc lines joined with spaces.
    pub fn when_line(self) -> String {
        self.when().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_upper_snake_and_documented() {
        let mut seen = std::collections::BTreeSet::new();
        for reason in Reason::ALL {
            let name = reason.as_str();
            assert!(name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'), "{name}");
            assert!(seen.insert(name), "{name} twice");
            assert!(reason.when_line().len() > 10, "{name} says when it happens");
        }
    }
}
