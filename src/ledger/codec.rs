//! Encoding of stored records: postcard (compact, deterministic serde). Decoding validates every
//! newtype again, so a corrupted record is reported, never silently used.

use crate::domain::LedgerError;

pub fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("in-memory encoding of a record cannot fail")
}

pub fn decode<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, LedgerError> {
    postcard::from_bytes(bytes).map_err(|e| {
        LedgerError::Internal(format!("record at key {} cannot be decoded: {e}", String::from_utf8_lossy(key)))
    })
}

/// The first field of a stored record (postcard writes fields in order, without framing), without
/// decoding the rest: the year's total of an as-of record without its months and days.
pub fn decode_first<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, LedgerError> {
    postcard::take_from_bytes(bytes).map(|(value, _)| value).map_err(|e| {
        LedgerError::Internal(format!("record at key {} cannot be decoded: {e}", String::from_utf8_lossy(key)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::projector::{AsOfDelta, RiskAsOf, YearSums};

    #[test]
    fn the_first_field_of_a_year_is_its_total() {
        let total = AsOfDelta {
            secured_fen: -12_345,
            pledges: 3,
            rights: 7,
            enterprises: 2,
            risk: Some(Box::new(RiskAsOf { paid_fen: 9, ..RiskAsOf::default() })),
        };
        let other = AsOfDelta { secured_fen: 1, ..AsOfDelta::default() };
        let sums = YearSums { total: total.clone(), months: vec![(4, other), (5, total.clone())] };
        assert_eq!(decode_first::<AsOfDelta>(b"X", &encode(&sums)).unwrap(), total);
    }
}
