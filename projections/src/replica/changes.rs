//! Row changes captured from a committed projection batch, and the PostgreSQL statements
//! that apply them. Pure: no I/O.
//!
//! A change carries the whole new row (an upsert) or the primary key (a delete), never a
//! delta, so applying a change twice, or applying a later full copy over it, gives the same
//! rows: the shipper can always fall back to copying a projection's tables.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::schema::TableSchema;

/// What happened to one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Inserted or updated: `row` holds every column.
    Upsert,
    /// Deleted: `row` holds the primary-key columns.
    Delete,
}

/// One row change.
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    pub table: Arc<str>,
    pub kind: ChangeKind,
    pub row: Map<String, Value>,
}

/// The row changes of one committed runner batch, numbered in commit order.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeBatch {
    pub seq: u64,
    pub changes: Vec<RowChange>,
}

/// Why a change cannot be written to PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("table {0:?} is not replicated")]
    UnknownTable(String),
    #[error("a row of {table:?} lacks column {column:?}")]
    MissingColumn { table: String, column: String },
    #[error("a text value in {table:?} holds a NUL character, which PostgreSQL cannot store")]
    NulInText { table: String },
}

/// A SQL literal for PostgreSQL (standard-conforming strings: only `'` is escaped).
pub fn literal(table: &str, value: &Value) -> Result<String, RenderError> {
    Ok(match value {
        Value::Null => "NULL".to_owned(),
        Value::Bool(b) => if *b { "1" } else { "0" }.to_owned(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quote_text(table, s)?,
        other => quote_text(table, &other.to_string())?,
    })
}

fn quote_text(table: &str, s: &str) -> Result<String, RenderError> {
    if s.contains('\0') {
        return Err(RenderError::NulInText {
            table: table.to_owned(),
        });
    }
    Ok(format!("'{}'", s.replace('\'', "''")))
}

fn column<'a>(
    schema: &TableSchema,
    row: &'a Map<String, Value>,
    name: &str,
) -> Result<&'a Value, RenderError> {
    row.get(name).ok_or_else(|| RenderError::MissingColumn {
        table: schema.name.clone(),
        column: name.to_owned(),
    })
}

/// `(v1, v2, …)` of `columns` for each row.
fn tuples(
    schema: &TableSchema,
    rows: &[&Map<String, Value>],
    columns: &[&str],
) -> Result<Vec<String>, RenderError> {
    rows.iter()
        .map(|row| {
            let literals = columns
                .iter()
                .map(|c| literal(&schema.name, column(schema, row, c)?))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(format!("({})", literals.join(", ")))
        })
        .collect()
}

/// Rows per multi-row statement.
const ROWS_PER_STATEMENT: usize = 500;

/// `INSERT … ON CONFLICT (key) DO UPDATE` for full rows of one table (their keys distinct).
pub fn upsert_rows<'a>(
    schema: &TableSchema,
    rows: impl IntoIterator<Item = &'a Map<String, Value>>,
) -> Result<String, RenderError> {
    let rows: Vec<&Map<String, Value>> = rows.into_iter().collect();
    let mut out = String::new();
    let non_key: Vec<String> = schema
        .columns
        .iter()
        .filter(|c| !schema.primary_key.contains(&c.name))
        .map(|c| format!("\"{0}\" = EXCLUDED.\"{0}\"", c.name))
        .collect();
    let on_conflict = if non_key.is_empty() {
        "DO NOTHING".to_owned()
    } else {
        format!("DO UPDATE SET {}", non_key.join(", "))
    };
    let columns: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let values = tuples(schema, chunk, &columns)?;
        out.push_str(&format!(
            "INSERT INTO {} ({}) VALUES {} ON CONFLICT ({}) {};\n",
            schema.quoted_name(),
            schema.quoted_columns(),
            values.join(", "),
            schema.quoted_key(),
            on_conflict
        ));
    }
    Ok(out)
}

/// `DELETE … WHERE (key) IN (…)` for keys of one table.
pub fn delete_rows<'a>(
    schema: &TableSchema,
    keys: impl IntoIterator<Item = &'a Map<String, Value>>,
) -> Result<String, RenderError> {
    let keys: Vec<&Map<String, Value>> = keys.into_iter().collect();
    let mut out = String::new();
    let key_columns: Vec<&str> = schema.primary_key.iter().map(String::as_str).collect();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let tuples = tuples(schema, chunk, &key_columns)?;
        out.push_str(&format!(
            "DELETE FROM {} WHERE ({}) IN ({});\n",
            schema.quoted_name(),
            schema.quoted_key(),
            tuples.join(", ")
        ));
    }
    Ok(out)
}

/// A table's changed keys in first-seen order, and the last change of each.
type KeyedChanges<'a> = (Vec<String>, HashMap<String, &'a RowChange>);

/// The statements applying `changes` (in commit order) to PostgreSQL: only the last change
/// of each row counts; per table, deletes go before upserts. Tables missing from `schemas`
/// are an error; filter first.
pub fn render_changes<'a>(
    schemas: &HashMap<Arc<str>, TableSchema>,
    changes: impl IntoIterator<Item = &'a RowChange>,
) -> Result<String, RenderError> {
    // Last change per (table, key), tables in first-seen order.
    let mut tables: Vec<Arc<str>> = Vec::new();
    let mut last: HashMap<Arc<str>, KeyedChanges<'a>> = HashMap::new();
    for change in changes {
        let schema = schemas
            .get(&change.table)
            .ok_or_else(|| RenderError::UnknownTable(change.table.to_string()))?;
        let mut key = String::new();
        for c in &schema.primary_key {
            key.push_str(&column(schema, &change.row, c)?.to_string());
            key.push('\u{1f}');
        }
        let (order, rows) = last.entry(change.table.clone()).or_insert_with(|| {
            tables.push(change.table.clone());
            (Vec::new(), HashMap::new())
        });
        if rows.insert(key.clone(), change).is_none() {
            order.push(key);
        }
    }
    let mut out = String::new();
    for table in tables {
        let schema = &schemas[&table];
        let (order, rows) = &last[&table];
        let ordered = order.iter().map(|k| rows[k]);
        let deletes = ordered.clone().filter(|c| c.kind == ChangeKind::Delete);
        let upserts = ordered.filter(|c| c.kind == ChangeKind::Upsert);
        out.push_str(&delete_rows(schema, deletes.map(|c| &c.row))?);
        out.push_str(&upsert_rows(schema, upserts.map(|c| &c.row))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::schema::Column;
    use super::*;
    use serde_json::json;

    fn schema() -> TableSchema {
        TableSchema {
            name: "usage".into(),
            columns: vec![
                Column {
                    name: "account".into(),
                    integer: false,
                    not_null: true,
                },
                Column {
                    name: "amount".into(),
                    integer: true,
                    not_null: true,
                },
            ],
            primary_key: vec!["account".into()],
            indexes: vec![],
        }
    }

    fn change(kind: ChangeKind, row: Value) -> RowChange {
        RowChange {
            table: "usage".into(),
            kind,
            row: row.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn literals_quote_text_and_keep_numbers() {
        assert_eq!(literal("t", &json!("O'Brien")).unwrap(), "'O''Brien'");
        assert_eq!(literal("t", &json!("a\\b")).unwrap(), "'a\\b'");
        assert_eq!(literal("t", &json!(-42)).unwrap(), "-42");
        assert_eq!(literal("t", &json!(null)).unwrap(), "NULL");
        assert!(literal("t", &json!("a\0b")).is_err());
    }

    #[test]
    fn the_last_change_of_a_row_wins_and_deletes_go_first() {
        let schemas = HashMap::from([(Arc::from("usage"), schema())]);
        let changes = [
            change(ChangeKind::Upsert, json!({"account": "AC1", "amount": 1})),
            change(ChangeKind::Upsert, json!({"account": "AC2", "amount": 5})),
            change(ChangeKind::Upsert, json!({"account": "AC1", "amount": 3})),
            change(ChangeKind::Delete, json!({"account": "AC2"})),
            change(ChangeKind::Upsert, json!({"account": "AC3", "amount": 7})),
        ];
        let sql = render_changes(&schemas, &changes).unwrap();
        assert_eq!(
            sql,
            "DELETE FROM \"usage\" WHERE (\"account\") IN (('AC2'));\n\
             INSERT INTO \"usage\" (\"account\", \"amount\") VALUES ('AC1', 3), ('AC3', 7) \
             ON CONFLICT (\"account\") DO UPDATE SET \"amount\" = EXCLUDED.\"amount\";\n"
        );
    }

    #[test]
    fn unknown_tables_and_missing_columns_are_errors() {
        let schemas = HashMap::from([(Arc::from("usage"), schema())]);
        let mut other = change(ChangeKind::Upsert, json!({"account": "AC1", "amount": 1}));
        other.table = "calls".into();
        assert_eq!(
            render_changes(&schemas, [&other]),
            Err(RenderError::UnknownTable("calls".into()))
        );
        let short = change(ChangeKind::Upsert, json!({"account": "AC1"}));
        assert!(matches!(
            render_changes(&schemas, [&short]),
            Err(RenderError::MissingColumn { .. })
        ));
    }
}
