//! Money: exact yuan amounts with at most two decimal places (fen), never floats.
//!
//! `Money` can only hold a non-negative amount with scale 2 and at most `MONEY_MAX`; a secured
//! amount or a credit limit is additionally positive and at most `AMOUNT_INPUT_MAX`. Sums are
//! checked, so an aggregate can never silently overflow or go negative.

use rust_decimal::Decimal;
use std::fmt;
use std::str::FromStr;

/// The largest amount accepted in one request: 1 trillion yuan. The largest IP pledges are a few
/// billion yuan; anything near this bound is a typo in units.
pub const AMOUNT_INPUT_MAX_YUAN: i64 = 1_000_000_000_000;

/// The largest aggregate the ledger holds: 10^20 yuan. 10 million pledges at the input maximum
/// stay far below it, and it is far below `Decimal`'s 96-bit mantissa (about 7.9 * 10^28 fen).
const MONEY_MAX_YUAN: i128 = 100_000_000_000_000_000_000;

/// A non-negative amount of yuan with exactly two decimal places.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(Decimal);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("must be a decimal number of yuan such as \"15000000.00\" (digits, optional '.' and at most 2 decimals)")]
    Syntax,
    #[error("must have at most 2 decimal places")]
    TooManyDecimals,
    #[error("must be positive")]
    NotPositive,
    #[error("must be at most {AMOUNT_INPUT_MAX_YUAN} yuan")]
    TooLarge,
}

impl Money {
    pub const ZERO: Money = Money(Decimal::from_parts(0, 0, 0, false, 2));

    /// Parses a positive amount as written in a request: `^[0-9]+(\.[0-9]{1,2})?$`, no sign, no
    /// exponent, no separators, so there is exactly one reading of every accepted string.
    pub fn parse_positive(text: &str) -> Result<Money, MoneyError> {
        let (whole, fraction) = match text.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (text, None),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MoneyError::Syntax);
        }
        if let Some(f) = fraction {
            if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                return Err(MoneyError::Syntax);
            }
            if f.len() > 2 {
                return Err(MoneyError::TooManyDecimals);
            }
        }
        // 13 integer digits already exceed the input maximum; refuse before Decimal parsing so a
        // megabyte of digits costs nothing.
        if whole.trim_start_matches('0').len() > 13 {
            return Err(MoneyError::TooLarge);
        }
        let value = Decimal::from_str(text).map_err(|_| MoneyError::Syntax)?;
        if value.is_zero() {
            return Err(MoneyError::NotPositive);
        }
        if value > Decimal::from(AMOUNT_INPUT_MAX_YUAN) {
            return Err(MoneyError::TooLarge);
        }
        Ok(Money::from_decimal(value).expect("bounded above"))
    }

    /// `parse_positive`, but zero is an amount too (a loss recovered in full).
    pub fn parse_non_negative(text: &str) -> Result<Money, MoneyError> {
        match Money::parse_positive(text) {
            Err(MoneyError::NotPositive) => Ok(Money::ZERO),
            other => other,
        }
    }

    /// Builds from fen (1/100 yuan); `None` when out of range.
    pub fn from_fen(fen: i128) -> Option<Money> {
        if !(0..=MONEY_MAX_YUAN * 100).contains(&fen) {
            return None;
        }
        Some(Money(Decimal::from_i128_with_scale(fen, 2)))
    }

    fn from_decimal(value: Decimal) -> Option<Money> {
        if value.is_sign_negative() && !value.is_zero() {
            return None;
        }
        if value.scale() > 2 {
            return None;
        }
        let mut v = value;
        v.rescale(2);
        if v > Decimal::from_i128_with_scale(MONEY_MAX_YUAN, 0) {
            return None;
        }
        Some(Money(v))
    }

    pub fn fen(self) -> i128 {
        self.0.mantissa()
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        Money::from_fen(self.fen().checked_add(other.fen())?)
    }

    /// `None` when the result would be negative: callers treat that as a broken invariant.
    pub fn checked_sub(self, other: Money) -> Option<Money> {
        Money::from_fen(self.fen().checked_sub(other.fen())?)
    }

    /// Applies a signed change in fen; `None` when the result leaves `0..=MONEY_MAX`.
    pub fn checked_apply(self, delta_fen: i128) -> Option<Money> {
        Money::from_fen(self.fen().checked_add(delta_fen)?)
    }
}

impl Default for Money {
    fn default() -> Money {
        Money::ZERO
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Always two decimals: "15000000.00".
        debug_assert_eq!(self.0.scale(), 2);
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({self})")
    }
}

// Stored as fen in an i128: compact, exact, and validated again when read back.
impl serde::Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i128(self.fen())
    }
}

impl<'de> serde::Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let fen = i128::deserialize(d)?;
        Money::from_fen(fen).ok_or_else(|| serde::de::Error::custom("money out of range"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<&str, MoneyError>) {
        let got = Money::parse_positive(input).map(|m| m.to_string());
        assert_eq!(got, expected.map(str::to_owned), "input {input:?}");
    }

    #[test]
    fn parses_exact_amounts() {
        check("15000000.00", Ok("15000000.00"));
        check("15000000", Ok("15000000.00"));
        check("0.5", Ok("0.50"));
        check("0.01", Ok("0.01"));
        check("1000000000000", Ok("1000000000000.00"));
        check("0007.10", Ok("7.10"));
    }

    #[test]
    fn refuses_everything_else() {
        check("", Err(MoneyError::Syntax));
        check("-1", Err(MoneyError::Syntax));
        check("+1", Err(MoneyError::Syntax));
        check("1e6", Err(MoneyError::Syntax));
        check("1,000", Err(MoneyError::Syntax));
        check(" 1", Err(MoneyError::Syntax));
        check("1.", Err(MoneyError::Syntax));
        check(".5", Err(MoneyError::Syntax));
        check("1.001", Err(MoneyError::TooManyDecimals));
        check("0", Err(MoneyError::NotPositive));
        check("0.00", Err(MoneyError::NotPositive));
        check("1000000000000.01", Err(MoneyError::TooLarge));
        check(&"9".repeat(100), Err(MoneyError::TooLarge));
    }

    #[test]
    fn sums_are_exact_and_bounded() {
        let a = Money::parse_positive("0.10").unwrap();
        let b = Money::parse_positive("0.20").unwrap();
        assert_eq!(a.checked_add(b).unwrap().to_string(), "0.30");
        assert_eq!(a.checked_sub(b), None);
        assert_eq!(b.checked_sub(a).unwrap().to_string(), "0.10");
        assert_eq!(Money::ZERO.to_string(), "0.00");
        assert_eq!(Money::from_fen(-1), None);
        let roundtrip: Money = postcard::from_bytes(&postcard::to_allocvec(&a).unwrap()).unwrap();
        assert_eq!(roundtrip, a);
    }
}
