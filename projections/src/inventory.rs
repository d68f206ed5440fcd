//! The number inventory: the DIDs the operator's carriers assigned, which accounts search
//! (`AvailablePhoneNumbers`) and buy (`IncomingPhoneNumbers` create). A number is
//! *available* when it is stocked, no account holds it (the `numbers` table), and any
//! release of it is older than the aging period.
//!
//! The table is kept by the numbers projection (`dialtone.number.stocked` rows, and the time
//! of each number's last release); this module holds its schema and queries, the operator's
//! CSV format, and the `Contains` pattern of Twilio's search.

use dialtone_events::payload::NumberStocked;
use dialtone_events::sid::PhoneNumberSid;
use dialtone_events::{EventLog, ExpectedVersion, LogError, NewEvent};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use time::OffsetDateTime;

use crate::billing::parse_micros;
use crate::numbers::normalize_e164;
use crate::projection::{load_time, sql, store_time, ProjectionError};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS number_inventory (
    phone_number         TEXT PRIMARY KEY,
    iso_country          TEXT    NOT NULL,
    number_type          TEXT    NOT NULL,
    region               TEXT,
    locality             TEXT,
    voice                INTEGER NOT NULL,
    sms                  INTEGER NOT NULL,
    monthly_price_micros INTEGER NOT NULL,
    released_at          TEXT,
    date_created         TEXT    NOT NULL,
    date_updated         TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS inventory_by_type ON number_inventory (iso_country, number_type, phone_number);
";

/// The number types of the inventory (Twilio's `Local`, `TollFree`, `Mobile` searches).
pub const NUMBER_TYPES: [&str; 3] = ["local", "toll-free", "mobile"];

/// A number of the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryRow {
    pub phone_number: String,
    pub iso_country: String,
    pub number_type: String,
    pub region: Option<String>,
    pub locality: Option<String>,
    pub voice: bool,
    pub sms: bool,
    pub monthly_price_micros: i64,
    pub released_at: Option<OffsetDateTime>,
    /// An account holds it now.
    pub held: bool,
}

impl InventoryRow {
    /// Whether an account may buy it at `now`: stocked, held by nobody, and released (if
    /// ever) at least `aging` ago.
    pub fn available(&self, now: OffsetDateTime, aging: time::Duration) -> bool {
        !self.held && self.released_at.is_none_or(|at| at + aging <= now)
    }
}

/// Records a stocked number (its attributes replace any earlier ones).
pub(crate) fn stock(
    tx: &Transaction<'_>,
    stocked: &NumberStocked,
    time: OffsetDateTime,
) -> Result<(), ProjectionError> {
    tx.prepare_cached(
        "INSERT INTO number_inventory (phone_number, iso_country, number_type, region, locality,
            voice, sms, monthly_price_micros, date_created, date_updated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)
         ON CONFLICT (phone_number) DO UPDATE SET iso_country = excluded.iso_country,
            number_type = excluded.number_type, region = excluded.region,
            locality = excluded.locality, voice = excluded.voice, sms = excluded.sms,
            monthly_price_micros = excluded.monthly_price_micros,
            date_updated = excluded.date_updated",
    )
    .and_then(|mut s| {
        s.execute(params![
            stocked.phone_number,
            stocked.iso_country,
            stocked.number_type,
            stocked.region,
            stocked.locality,
            stocked.voice,
            stocked.sms,
            stocked.monthly_price_micros,
            store_time(time),
        ])
    })
    .map(|_| ())
    .map_err(sql("stocking a number"))
}

/// Remembers when a number was last released (it ages before it is sold again).
pub(crate) fn released(
    tx: &Transaction<'_>,
    phone_number: &str,
    time: OffsetDateTime,
) -> Result<(), ProjectionError> {
    tx.prepare_cached("UPDATE number_inventory SET released_at = ?2 WHERE phone_number = ?1")
        .and_then(|mut s| s.execute(params![phone_number, store_time(time)]))
        .map(|_| ())
        .map_err(sql("aging a released number"))
}

const SELECT: &str = "SELECT i.phone_number, i.iso_country, i.number_type, i.region, i.locality,
    i.voice, i.sms, i.monthly_price_micros, i.released_at,
    EXISTS (SELECT 1 FROM numbers n WHERE n.phone_number = i.phone_number)
    FROM number_inventory i";

type RawRow = (
    (String, String, String, Option<String>, Option<String>),
    (bool, bool, i64, Option<String>, bool),
);

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?),
        (r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?),
    ))
}

fn to_row(raw: RawRow) -> Result<InventoryRow, ProjectionError> {
    let (
        (phone_number, iso_country, number_type, region, locality),
        (voice, sms, monthly_price_micros, released_at, held),
    ) = raw;
    Ok(InventoryRow {
        phone_number,
        iso_country,
        number_type,
        region,
        locality,
        voice,
        sms,
        monthly_price_micros,
        released_at: released_at
            .map(|t| load_time("number_inventory", &t))
            .transpose()?,
        held,
    })
}

/// The inventory's entry for `phone_number` (E.164), if it was stocked.
pub fn inventory_entry(
    conn: &Connection,
    phone_number: &str,
) -> Result<Option<InventoryRow>, ProjectionError> {
    conn.prepare_cached(&format!("{SELECT} WHERE i.phone_number = ?1"))
        .and_then(|mut s| s.query_row([phone_number], read_row).optional())
        .map_err(sql("reading the inventory"))?
        .map(to_row)
        .transpose()
}

/// Whether the inventory has any number in `iso_country`.
pub fn stocks_country(conn: &Connection, iso_country: &str) -> Result<bool, ProjectionError> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM number_inventory WHERE iso_country = ?1)")
        .and_then(|mut s| s.query_row([iso_country], |r| r.get(0)))
        .map_err(sql("reading the inventory"))
}

/// A search of the available numbers (Twilio's `AvailablePhoneNumbers` filters).
#[derive(Debug, Clone)]
pub struct InventorySearch {
    pub iso_country: String,
    pub number_type: String,
    /// NANP area code (three digits): numbers `+1` + it.
    pub area_code: Option<String>,
    pub contains: Option<ContainsPattern>,
    pub in_region: Option<String>,
    pub in_locality: Option<String>,
    pub sms_enabled: Option<bool>,
    pub voice_enabled: Option<bool>,
    pub limit: usize,
    pub now: OffsetDateTime,
    /// How long a released number ages before it is sold again.
    pub aging: time::Duration,
}

/// The available numbers matching `search`, in number order, at most `search.limit`.
pub fn search_available(
    conn: &Connection,
    search: &InventorySearch,
) -> Result<Vec<InventoryRow>, ProjectionError> {
    let mut conditions = vec![
        "i.iso_country = ?".to_owned(),
        "i.number_type = ?".to_owned(),
        "NOT EXISTS (SELECT 1 FROM numbers n WHERE n.phone_number = i.phone_number)".to_owned(),
    ];
    let mut values = vec![
        Value::Text(search.iso_country.clone()),
        Value::Text(search.number_type.clone()),
    ];
    if let Some(area) = &search.area_code {
        conditions.push("i.phone_number LIKE ?".to_owned());
        values.push(Value::Text(format!("+1{area}%")));
    }
    for (column, value) in [
        ("region", &search.in_region),
        ("locality", &search.in_locality),
    ] {
        if let Some(value) = value {
            conditions.push(format!("i.{column} = ? COLLATE NOCASE"));
            values.push(Value::Text(value.clone()));
        }
    }
    for (column, value) in [("sms", search.sms_enabled), ("voice", search.voice_enabled)] {
        if let Some(value) = value {
            conditions.push(format!("i.{column} = ?"));
            values.push(Value::Integer(i64::from(value)));
        }
    }
    let query = format!(
        "{SELECT} WHERE {} ORDER BY i.phone_number",
        conditions.join(" AND ")
    );
    let mut statement = conn
        .prepare_cached(&query)
        .map_err(sql("searching the inventory"))?;
    let rows = statement
        .query_map(rusqlite::params_from_iter(values), read_row)
        .map_err(sql("searching the inventory"))?;
    let mut found = Vec::new();
    for raw in rows {
        let row = to_row(raw.map_err(sql("searching the inventory"))?)?;
        let matches = search
            .contains
            .as_ref()
            .is_none_or(|p| p.matches(&row.phone_number));
        if matches && row.available(search.now, search.aging) {
            found.push(row);
            if found.len() >= search.limit {
                break;
            }
        }
    }
    Ok(found)
}

/// Twilio's `Contains`: 2 to 16 digits, `*` (any digit) and letters (their keypad digits),
/// found anywhere in the number; a leading `+` anchors it at the number's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainsPattern {
    anchored: bool,
    /// `None` matches any digit.
    digits: Vec<Option<u8>>,
}

/// Why a `Contains` pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("Contains must be 2 to 16 characters long")]
    Length,
    #[error("Contains may hold digits, letters and *, not {0:?}")]
    Character(char),
}

/// A letter's digit on a phone keypad.
fn keypad(letter: char) -> Option<u8> {
    let digit = match letter.to_ascii_uppercase() {
        'A'..='C' => 2,
        'D'..='F' => 3,
        'G'..='I' => 4,
        'J'..='L' => 5,
        'M'..='O' => 6,
        'P'..='S' => 7,
        'T'..='V' => 8,
        'W'..='Z' => 9,
        _ => return None,
    };
    Some(digit)
}

impl ContainsPattern {
    pub fn parse(pattern: &str) -> Result<ContainsPattern, PatternError> {
        let (anchored, body) = match pattern.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        let length = body.chars().count();
        if !(2..=16).contains(&length) {
            return Err(PatternError::Length);
        }
        let digits = body
            .chars()
            .map(|c| match c {
                '*' => Ok(None),
                '0'..='9' => Ok(Some(c as u8 - b'0')),
                c if c.is_ascii_alphabetic() => Ok(keypad(c)),
                c => Err(PatternError::Character(c)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ContainsPattern { anchored, digits })
    }

    /// Whether the E.164 `number` holds the pattern.
    pub fn matches(&self, number: &str) -> bool {
        let digits: Vec<u8> = number
            .bytes()
            .filter(u8::is_ascii_digit)
            .map(|b| b - b'0')
            .collect();
        let fits = |at: usize| {
            self.digits
                .iter()
                .zip(&digits[at..])
                .all(|(want, have)| want.is_none_or(|w| w == *have))
        };
        if digits.len() < self.digits.len() {
            return false;
        }
        if self.anchored {
            return fits(0);
        }
        (0..=digits.len() - self.digits.len()).any(fits)
    }
}

/// What an inventory file holds: the rows to stock (with their line numbers) and the
/// refused rows, each with its line and why.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct InventoryFile {
    pub rows: Vec<(usize, NumberStocked)>,
    pub refused: Vec<(usize, String)>,
}

/// The columns of an inventory file's header, in any order.
pub const CSV_COLUMNS: [&str; 8] = [
    "number",
    "country",
    "type",
    "region",
    "locality",
    "voice",
    "sms",
    "monthly_price",
];

/// Splits one CSV line into fields (`"…"` quotes a field; `""` inside is a quote).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err("an unclosed quote".to_owned());
    }
    fields.push(field);
    Ok(fields)
}

fn flag(value: &str, column: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!("{column} must be true or false, not {other:?}")),
    }
}

fn stocked_row(fields: &[String], columns: &[usize; 8]) -> Result<NumberStocked, String> {
    let get = |i: usize| fields.get(columns[i]).map(|f| f.trim()).unwrap_or("");
    let optional = |i: usize| Some(get(i).to_owned()).filter(|v| !v.is_empty());
    let phone_number = normalize_e164(get(0)).map_err(|e| format!("number {:?}: {e}", get(0)))?;
    let iso_country = get(1).to_ascii_uppercase();
    if iso_country.len() != 2 || !iso_country.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(format!(
            "country must be an ISO 3166 code such as US, not {:?}",
            get(1)
        ));
    }
    let number_type = get(2).to_ascii_lowercase();
    if !NUMBER_TYPES.contains(&number_type.as_str()) {
        return Err(format!(
            "type must be local, toll-free or mobile, not {:?}",
            get(2)
        ));
    }
    let monthly_price_micros = parse_micros(get(7)).ok_or_else(|| {
        format!(
            "monthly_price must be a decimal such as 1.15 (at most 6 places), not {:?}",
            get(7)
        )
    })?;
    Ok(NumberStocked {
        phone_number,
        iso_country,
        number_type,
        region: optional(3),
        locality: optional(4),
        voice: flag(get(5), "voice")?,
        sms: flag(get(6), "sms")?,
        monthly_price_micros,
    })
}

/// Reads an inventory file (header `number,country,type,region,locality,voice,sms,
/// monthly_price`). Bad rows are refused one by one; a bad header refuses the file. Pure.
pub fn parse_inventory_csv(text: &str) -> Result<InventoryFile, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err("the file is empty".to_owned());
    };
    let names: Vec<String> = csv_fields(header)?
        .into_iter()
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    let mut columns = [0usize; 8];
    for (slot, wanted) in columns.iter_mut().zip(CSV_COLUMNS) {
        *slot = names.iter().position(|n| n == wanted).ok_or_else(|| {
            format!(
                "the header lacks {wanted:?} (it must name {})",
                CSV_COLUMNS.join(",")
            )
        })?;
    }
    let mut file = InventoryFile::default();
    let mut seen = std::collections::HashMap::new();
    for (line, text) in lines {
        let row = csv_fields(text).and_then(|fields| stocked_row(&fields, &columns));
        match row {
            Ok(row) => match seen.insert(row.phone_number.clone(), line) {
                Some(first) => file.refused.push((
                    line,
                    format!("{} is on line {first} already", row.phone_number),
                )),
                None => file.rows.push((line, row)),
            },
            Err(error) => file.refused.push((line, error)),
        }
    }
    Ok(file)
}

/// Appends each row's `number.stocked` to its number's inventory stream (one event per
/// row: a row is stocked whole or not at all). Returns how many were stocked, calling
/// `progress` after each.
pub async fn stock_numbers(
    log: &dyn EventLog,
    rows: &[(usize, NumberStocked)],
    mut progress: impl FnMut(usize),
) -> Result<usize, LogError> {
    for (done, (_, row)) in rows.iter().enumerate() {
        let stream = PhoneNumberSid::of_inventory(&row.phone_number);
        log.append(
            stream.as_str(),
            ExpectedVersion::Any,
            vec![NewEvent::new("", row.clone())],
        )
        .await?;
        progress(done + 1);
    }
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_matches_digits_letters_and_wildcards_anywhere() {
        let pattern = ContainsPattern::parse("55*01").unwrap();
        assert!(pattern.matches("+14155550100"));
        assert!(!pattern.matches("+14155560200"));
        // Letters are their keypad digits: "DOG" = 364.
        assert!(ContainsPattern::parse("DOG")
            .unwrap()
            .matches("+12125553640"));
        assert!(ContainsPattern::parse("+1415")
            .unwrap()
            .matches("+14155550100"));
        assert!(!ContainsPattern::parse("+415")
            .unwrap()
            .matches("+14155550100"));
        assert_eq!(ContainsPattern::parse("5"), Err(PatternError::Length));
        assert_eq!(
            ContainsPattern::parse("55-01"),
            Err(PatternError::Character('-'))
        );
        assert_eq!(
            ContainsPattern::parse("12345678901234567"),
            Err(PatternError::Length)
        );
    }

    #[test]
    fn an_inventory_file_loads_its_good_rows_and_names_the_bad_ones() {
        let text = "number,country,type,region,locality,voice,sms,monthly_price\n\
            +14155550100,US,local,CA,San Francisco,true,true,1.15\n\
            +1 212 555 0101,us,Local,NY,\"New York, NY\",true,false,1.000000\n\
            +18005550102,US,toll-free,,,true,false,2\n\
            not-a-number,US,local,CA,,true,true,1.15\n\
            +14155550103,USA,local,CA,,true,true,1.15\n\
            +14155550104,US,landline,CA,,true,true,1.15\n\
            +14155550105,US,local,CA,,yes,true,1.15\n\
            +14155550106,US,local,CA,,true,true,1.1500001\n\
            +14155550100,US,local,CA,,true,true,1.15\n";
        let file = parse_inventory_csv(text).unwrap();
        let numbers: Vec<(usize, &str)> = file
            .rows
            .iter()
            .map(|(line, r)| (*line, r.phone_number.as_str()))
            .collect();
        assert_eq!(
            numbers,
            [
                (2, "+14155550100"),
                (3, "+12125550101"),
                (4, "+18005550102")
            ]
        );
        let second = &file.rows[1].1;
        assert_eq!(second.iso_country, "US");
        assert_eq!(second.number_type, "local");
        assert_eq!(second.locality.as_deref(), Some("New York, NY"));
        assert_eq!(second.monthly_price_micros, 1_000_000);
        assert_eq!(file.rows[2].1.region, None);
        let refused: Vec<usize> = file.refused.iter().map(|(l, _)| *l).collect();
        assert_eq!(refused, [5, 6, 7, 8, 9, 10], "{:?}", file.refused);
        assert!(file.refused[5].1.contains("line 2"), "{:?}", file.refused);
        assert!(parse_inventory_csv("number,country\n+14155550100,US\n")
            .unwrap_err()
            .contains("type"));
    }

    #[test]
    fn a_released_number_ages_before_it_is_sold_again() {
        let now = OffsetDateTime::now_utc();
        let mut row = InventoryRow {
            phone_number: "+14155550100".into(),
            iso_country: "US".into(),
            number_type: "local".into(),
            region: None,
            locality: None,
            voice: true,
            sms: true,
            monthly_price_micros: 1_150_000,
            released_at: None,
            held: false,
        };
        let aging = time::Duration::days(30);
        assert!(row.available(now, aging));
        row.released_at = Some(now - time::Duration::days(29));
        assert!(!row.available(now, aging));
        row.released_at = Some(now - time::Duration::days(30));
        assert!(row.available(now, aging));
        row.held = true;
        assert!(!row.available(now, aging));
    }
}
