//! Identifiers with real check digits (`src/domain/identifiers.md`): Unified Social Credit Codes, Chinese
//! patent numbers, trademark and copyright registration numbers, and the right kinds they belong to.
//!
//! Each newtype is built only by its parser, so holding one means its check digit was verified and
//! it is in canonical form: `ZL 2019 1 0123456.X` and `201910123456.X` are one `PatentNumber`.

use std::fmt;

/// The 31 characters of the USCC alphabet (GB 32100-2015): no I, O, Z, S, V.
const USCC_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];

/// An 18-character Unified Social Credit Code whose check character is right.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct CreditCode(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditCodeError {
    #[error("must be 18 characters (got {0})")]
    Length(usize),
    #[error("character {position} ({character:?}) is not in the credit-code alphabet 0-9 A-H J-N P-R T U W-Y")]
    Character { position: usize, character: char },
    #[error("check character is {found:?}, expected {expected:?}")]
    Check { expected: char, found: char },
}

impl CreditCode {
    /// Trims surrounding white space and upper-cases ASCII letters, then checks the code.
    pub fn parse(text: &str) -> Result<CreditCode, CreditCodeError> {
        let code: String = text.trim().to_ascii_uppercase();
        let count = code.chars().count();
        if count != 18 {
            return Err(CreditCodeError::Length(count));
        }
        let mut values = [0u32; 18];
        for (i, c) in code.chars().enumerate() {
            let value = u8::try_from(c).ok().and_then(|b| USCC_ALPHABET.iter().position(|&a| a == b));
            match value {
                Some(v) => values[i] = v as u32,
                None => return Err(CreditCodeError::Character { position: i + 1, character: c }),
            }
        }
        let sum: u32 = USCC_WEIGHTS.iter().zip(values.iter()).map(|(w, v)| w * v).sum();
        let check = (31 - sum % 31) % 31;
        let expected = USCC_ALPHABET[check as usize] as char;
        let found = USCC_ALPHABET[values[17] as usize] as char;
        if expected != found {
            return Err(CreditCodeError::Check { expected, found });
        }
        Ok(CreditCode(code))
    }

    /// The administrative division code of the authority that registered the entity (GB 32100,
    /// characters 3-8): where its register of enterprises, and so its IP office, is.
    pub fn registration_region_code(&self) -> &str {
        // Parsed as 18 characters of the USCC alphabet, which is ASCII.
        &self.0[2..8]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Completes a code from its first 17 characters by computing the check character (for
    /// generating test and benchmark data); `None` if a character is outside the alphabet.
    pub fn complete(first_17: &str) -> Option<CreditCode> {
        if first_17.len() != 17 {
            return None;
        }
        let mut sum = 0;
        for (b, w) in first_17.bytes().zip(USCC_WEIGHTS) {
            sum += w * USCC_ALPHABET.iter().position(|&a| a == b)? as u32;
        }
        let check = USCC_ALPHABET[((31 - sum % 31) % 31) as usize] as char;
        Some(CreditCode(format!("{first_17}{check}")))
    }
}

impl fmt::Display for CreditCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CreditCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CreditCode({})", self.0)
    }
}

impl<'de> serde::Deserialize<'de> for CreditCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CreditCode::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The kinds of intellectual-property right that can be pledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum RightKind {
    InventionPatent,
    UtilityModel,
    DesignPatent,
    Trademark,
    Copyright,
}

impl RightKind {
    pub const ALL: [RightKind; 5] = [
        RightKind::InventionPatent,
        RightKind::UtilityModel,
        RightKind::DesignPatent,
        RightKind::Trademark,
        RightKind::Copyright,
    ];

    /// The API name of the kind (the proto enum value name).
    pub fn name(self) -> &'static str {
        match self {
            RightKind::InventionPatent => "INVENTION_PATENT",
            RightKind::UtilityModel => "UTILITY_MODEL",
            RightKind::DesignPatent => "DESIGN_PATENT",
            RightKind::Trademark => "TRADEMARK",
            RightKind::Copyright => "COPYRIGHT",
        }
    }

    /// A stable one-byte tag, used in storage keys.
    pub fn tag(self) -> u8 {
        match self {
            RightKind::InventionPatent => 1,
            RightKind::UtilityModel => 2,
            RightKind::DesignPatent => 3,
            RightKind::Trademark => 4,
            RightKind::Copyright => 5,
        }
    }

    pub fn from_tag(tag: u8) -> Option<RightKind> {
        RightKind::ALL.into_iter().find(|k| k.tag() == tag)
    }

    fn is_patent(self) -> bool {
        matches!(self, RightKind::InventionPatent | RightKind::UtilityModel | RightKind::DesignPatent)
    }
}

/// A Chinese patent number, check digit verified, in canonical form `ZL` + digits + `.` + check.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PatentNumber {
    canonical: String,
    kind: RightKind,
    filing_year: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RightNumberError {
    #[error("is empty")]
    Empty,
    #[error("must be 12 digits (8 before 2003) and a check character, as in ZL201910123456.X")]
    PatentSyntax,
    #[error("check character is {found:?}, expected {expected:?}")]
    PatentCheck { expected: char, found: char },
    #[error("type digit {digit} is a {found} number, not a {expected}")]
    PatentTypeMismatch { digit: char, found: &'static str, expected: &'static str },
    #[error("type digit {0} is not a patent type (1, 2, 3, 8 or 9)")]
    PatentType(char),
    #[error("must be a decimal trademark registration number of 1 to 9 digits")]
    Trademark,
    #[error("must be at most {max} characters without control characters")]
    Copyright { max: usize },
}

const COPYRIGHT_NUMBER_CHARS_MAX: usize = 64;

impl PatentNumber {
    /// Accepts the written forms seen in practice: `ZL201910123456.7`, `ZL 2019 1 0123456.7`,
    /// `CN201910123456.7`, `201910123456.7` (and without the dot); 8-digit pre-2003 numbers too.
    pub fn parse(text: &str, kind: RightKind) -> Result<PatentNumber, RightNumberError> {
        assert!(kind.is_patent());
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        if compact.is_empty() {
            return Err(RightNumberError::Empty);
        }
        let upper = compact.to_ascii_uppercase();
        let body = upper.strip_prefix("ZL").or_else(|| upper.strip_prefix("CN")).unwrap_or(&upper);
        // Without a dot the check is the last character, which need not be one byte: split at a
        // character boundary (the text is the caller's, any UTF-8).
        let (digits, check) = match (body.split_once('.'), body.char_indices().last()) {
            (Some((d, c)), _) => (d, c),
            (None, Some((last, _))) if last > 0 => body.split_at(last),
            (None, _) => return Err(RightNumberError::PatentSyntax),
        };
        if !(digits.len() == 12 || digits.len() == 8) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RightNumberError::PatentSyntax);
        }
        let found = match check.as_bytes() {
            [c] if c.is_ascii_digit() || *c == b'X' => *c as char,
            _ => return Err(RightNumberError::PatentSyntax),
        };
        let sum: u32 = digits.bytes().enumerate().map(|(i, b)| (2 + (i as u32 % 8)) * u32::from(b - b'0')).sum();
        let r = sum % 11;
        let expected = if r == 10 { 'X' } else { char::from(b'0' + r as u8) };
        if expected != found {
            return Err(RightNumberError::PatentCheck { expected, found });
        }
        // 12 digits: YYYY T SSSSSSS; 8 digits (before 2003): YY T SSSSS.
        let (filing_year, type_digit) = if digits.len() == 12 {
            (digits[..4].parse::<u16>().map_err(|_| RightNumberError::PatentSyntax)?, digits.as_bytes()[4] as char)
        } else {
            let yy = digits[..2].parse::<u16>().map_err(|_| RightNumberError::PatentSyntax)?;
            (1900 + yy, digits.as_bytes()[2] as char)
        };
        let found_kind = match type_digit {
            '1' | '8' => RightKind::InventionPatent,
            '2' | '9' => RightKind::UtilityModel,
            '3' => RightKind::DesignPatent,
            other => return Err(RightNumberError::PatentType(other)),
        };
        if found_kind != kind {
            return Err(RightNumberError::PatentTypeMismatch {
                digit: type_digit,
                found: found_kind.name(),
                expected: kind.name(),
            });
        }
        Ok(PatentNumber { canonical: format!("ZL{digits}.{found}"), kind, filing_year })
    }

    pub fn filing_year(&self) -> u16 {
        self.filing_year
    }

    /// Completes a 12-digit application number with its check character, in canonical form (for
    /// generating test and benchmark data).
    pub fn complete(digits_12: &str) -> Option<String> {
        if digits_12.len() != 12 || !digits_12.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let sum: u32 = digits_12.bytes().enumerate().map(|(i, b)| (2 + (i as u32 % 8)) * u32::from(b - b'0')).sum();
        let r = sum % 11;
        let check = if r == 10 { 'X' } else { char::from(b'0' + r as u8) };
        Some(format!("ZL{digits_12}.{check}"))
    }
}

/// The number of a right, canonical for its kind; equal numbers are the same right.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RightNumber {
    kind: RightKind,
    canonical: String,
    /// Filing year for patents, from the number itself.
    filing_year: Option<u16>,
}

impl RightNumber {
    pub fn parse(text: &str, kind: RightKind) -> Result<RightNumber, RightNumberError> {
        match kind {
            RightKind::InventionPatent | RightKind::UtilityModel | RightKind::DesignPatent => {
                let p = PatentNumber::parse(text, kind)?;
                Ok(RightNumber { kind, filing_year: Some(p.filing_year), canonical: p.canonical })
            }
            RightKind::Trademark => {
                let t = text.trim();
                if t.is_empty() {
                    return Err(RightNumberError::Empty);
                }
                if t.len() > 9 || !t.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(RightNumberError::Trademark);
                }
                let canonical = t.trim_start_matches('0');
                if canonical.is_empty() {
                    return Err(RightNumberError::Trademark);
                }
                Ok(RightNumber { kind, canonical: canonical.to_owned(), filing_year: None })
            }
            RightKind::Copyright => {
                let t = text.trim();
                if t.is_empty() {
                    return Err(RightNumberError::Empty);
                }
                if t.chars().count() > COPYRIGHT_NUMBER_CHARS_MAX || t.chars().any(char::is_control) {
                    return Err(RightNumberError::Copyright { max: COPYRIGHT_NUMBER_CHARS_MAX });
                }
                Ok(RightNumber { kind, canonical: t.to_owned(), filing_year: None })
            }
        }
    }

    pub fn kind(&self) -> RightKind {
        self.kind
    }

    pub fn as_str(&self) -> &str {
        &self.canonical
    }

    pub fn filing_year(&self) -> Option<u16> {
        self.filing_year
    }
}

impl fmt::Display for RightNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.name(), self.canonical)
    }
}

impl serde::Serialize for RightNumber {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.kind, &self.canonical).serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for RightNumber {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (kind, text) = <(RightKind, String)>::deserialize(d)?;
        RightNumber::parse(&text, kind).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_code(input: &str, expected: Result<&str, CreditCodeError>) {
        let got = CreditCode::parse(input).map(|c| c.as_str().to_owned());
        assert_eq!(got, expected.map(str::to_owned), "input {input:?}");
    }

    #[test]
    fn credit_codes_published_pass() {
        for code in [
            "91330100716105852F",
            "914403001922038216",
            "91110000100017643K",
            "911100001000044477",
            "91440300708461136T",
        ] {
            check_code(code, Ok(code));
        }
        check_code(" 91330100716105852f ", Ok("91330100716105852F"));
    }

    #[test]
    fn completed_identifiers_pass() {
        assert_eq!(CreditCode::complete("91330100716105852").unwrap().as_str(), "91330100716105852F");
        assert_eq!(PatentNumber::complete("201811564288").unwrap(), "ZL201811564288.X");
        assert_eq!(CreditCode::complete("9133010071610585I"), None);
    }

    #[test]
    fn credit_codes_broken_fail() {
        check_code("91330100716105852", Err(CreditCodeError::Length(17)));
        check_code("91330100716105852G", Err(CreditCodeError::Check { expected: 'F', found: 'G' }));
        check_code("9133010071610585IF", Err(CreditCodeError::Character { position: 17, character: 'I' }));
        check_code("91330100716105852中", Err(CreditCodeError::Character { position: 18, character: '中' }));
    }

    fn check_right(input: &str, kind: RightKind, expected: Result<&str, RightNumberError>) {
        let got = RightNumber::parse(input, kind).map(|r| r.as_str().to_owned());
        assert_eq!(got, expected.map(str::to_owned), "input {input:?}");
    }

    #[test]
    fn patent_numbers_published_pass_in_every_written_form() {
        use RightKind::*;
        check_right("ZL202010566088.9", InventionPatent, Ok("ZL202010566088.9"));
        check_right("ZL201510958772.0", InventionPatent, Ok("ZL201510958772.0"));
        check_right("ZL202510942578.7", InventionPatent, Ok("ZL202510942578.7"));
        check_right("ZL200510096239.4", InventionPatent, Ok("ZL200510096239.4"));
        check_right("ZL202322865413.3", UtilityModel, Ok("ZL202322865413.3"));
        check_right("ZL201811564288.X", InventionPatent, Ok("ZL201811564288.X"));
        check_right("zl 2018 1 1564288.x", InventionPatent, Ok("ZL201811564288.X"));
        check_right("CN201811564288.X", InventionPatent, Ok("ZL201811564288.X"));
        check_right("201811564288.X", InventionPatent, Ok("ZL201811564288.X"));
        check_right("201811564288X", InventionPatent, Ok("ZL201811564288.X"));
    }

    #[test]
    fn patent_numbers_broken_fail() {
        use RightKind::*;
        check_right(
            "ZL202310123456.7",
            InventionPatent,
            Err(RightNumberError::PatentCheck { expected: '6', found: '7' }),
        );
        check_right(
            "ZL202322865413.3",
            InventionPatent,
            Err(RightNumberError::PatentTypeMismatch {
                digit: '2',
                found: "UTILITY_MODEL",
                expected: "INVENTION_PATENT",
            }),
        );
        check_right("ZL2023228654.3", InventionPatent, Err(RightNumberError::PatentSyntax));
        check_right("", DesignPatent, Err(RightNumberError::Empty));
        check_right("ZL20231012345A.7", InventionPatent, Err(RightNumberError::PatentSyntax));
    }

    #[test]
    fn patent_numbers_ending_in_multibyte_characters_fail() {
        use RightKind::*;
        // Found by issue 10 and the fuzzer: the check character was split off by byte.
        for input in ["ZLé", "é", "𛲀", "中中", "ZL201811564288中", "201811564288é", "ZL 2018 1 1564288 é"] {
            for kind in [InventionPatent, UtilityModel, DesignPatent] {
                check_right(input, kind, Err(RightNumberError::PatentSyntax));
            }
        }
        check_right("é", Trademark, Err(RightNumberError::Trademark));
        check_right("ZLé", Copyright, Ok("ZLé"));
    }

    #[test]
    fn pre_2003_patent_numbers_use_the_same_rule() {
        // 98 1 12345: weights 2..9 over 8 digits.
        let digits = "98112345";
        let sum: u32 = digits.bytes().enumerate().map(|(i, b)| (2 + i as u32) * u32::from(b - b'0')).sum();
        let r = sum % 11;
        let check = if r == 10 { 'X' } else { char::from(b'0' + r as u8) };
        let number = RightNumber::parse(&format!("ZL{digits}.{check}"), RightKind::InventionPatent).unwrap();
        assert_eq!(number.filing_year(), Some(1998));
    }

    #[test]
    fn trademarks_and_copyrights() {
        check_right(" 1234567 ", RightKind::Trademark, Ok("1234567"));
        check_right("01234567", RightKind::Trademark, Ok("1234567"));
        check_right("12a", RightKind::Trademark, Err(RightNumberError::Trademark));
        check_right("0", RightKind::Trademark, Err(RightNumberError::Trademark));
        check_right(" 2019SR0123456 ", RightKind::Copyright, Ok("2019SR0123456"));
        check_right("国作登字-2019-A-00123456", RightKind::Copyright, Ok("国作登字-2019-A-00123456"));
        check_right("   ", RightKind::Copyright, Err(RightNumberError::Empty));
    }
}
