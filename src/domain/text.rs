//! Bounded texts and calendar dates as they arrive in requests.
//!
//! `Text<MIN, MAX>` is trimmed, has no control characters and holds `MIN..=MAX` characters, so a
//! name can neither be blank nor a megabyte long. Dates are strict `YYYY-MM-DD`.

use chrono::NaiveDate;
use std::fmt;

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Text<const MIN: usize, const MAX: usize>(String);

/// Party names: an enterprise or bank name.
pub type Name = Text<1, 200>;
/// Optional free text: a title, a note, a programme name.
pub type Note = Text<0, 500>;
/// Required free text: the reason for a change.
pub type Reason = Text<1, 500>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("is required")]
    Missing,
    #[error("must be at most {0} characters")]
    TooLong(usize),
    #[error("must not contain control characters")]
    Control,
}

impl<const MIN: usize, const MAX: usize> Text<MIN, MAX> {
    pub fn parse(text: &str) -> Result<Self, TextError> {
        let t = text.trim();
        let count = t.chars().count();
        if count < MIN {
            return Err(TextError::Missing);
        }
        if count > MAX {
            return Err(TextError::TooLong(MAX));
        }
        if t.chars().any(char::is_control) {
            return Err(TextError::Control);
        }
        Ok(Text(t.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<const MIN: usize, const MAX: usize> fmt::Debug for Text<MIN, MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl<const MIN: usize, const MAX: usize> fmt::Display for Text<MIN, MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de, const MIN: usize, const MAX: usize> serde::Deserialize<'de> for Text<MIN, MAX> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Text::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Chinese patent law took effect in 1985; nothing in the ledger is dated before it. Copyright and
/// trademark terms run long, so expiry dates may be far ahead.
pub const DATE_YEAR_MIN: i32 = 1985;
pub const DATE_YEAR_MAX: i32 = 2200;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    #[error("is required")]
    Missing,
    #[error("must be a date written YYYY-MM-DD")]
    Syntax,
    #[error("must be between {DATE_YEAR_MIN} and {DATE_YEAR_MAX}")]
    OutOfRange,
}

pub fn parse_date(text: &str) -> Result<NaiveDate, DateError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(DateError::Missing);
    }
    let b = t.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return Err(DateError::Syntax);
    }
    let date = NaiveDate::parse_from_str(t, "%Y-%m-%d").map_err(|_| DateError::Syntax)?;
    use chrono::Datelike;
    if !(DATE_YEAR_MIN..=DATE_YEAR_MAX).contains(&date.year()) {
        return Err(DateError::OutOfRange);
    }
    Ok(date)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_bounded() {
        assert_eq!(Name::parse("  杭州某某科技有限公司 ").unwrap().as_str(), "杭州某某科技有限公司");
        assert_eq!(Name::parse("   "), Err(TextError::Missing));
        assert_eq!(Name::parse(&"字".repeat(201)), Err(TextError::TooLong(200)));
        assert_eq!(Name::parse("a\u{0}b"), Err(TextError::Control));
        assert_eq!(Note::parse("").unwrap().as_str(), "");
    }

    #[test]
    fn dates_are_strict() {
        assert_eq!(parse_date("2019-06-01").unwrap().to_string(), "2019-06-01");
        assert_eq!(parse_date("2020-02-29").unwrap().to_string(), "2020-02-29");
        assert_eq!(parse_date("2019-02-29"), Err(DateError::Syntax));
        assert_eq!(parse_date("2019-6-1"), Err(DateError::Syntax));
        assert_eq!(parse_date("20190601"), Err(DateError::Syntax));
        assert_eq!(parse_date(""), Err(DateError::Missing));
        assert_eq!(parse_date("1900-01-01"), Err(DateError::OutOfRange));
    }
}
