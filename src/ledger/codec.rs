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
