//! A read-model table's shape, read from SQLite, and the same table in PostgreSQL's dialect.
//!
//! The PostgreSQL schema is derived from the SQLite one rather than written twice, so the two
//! can never drift: a projection's version bump changes both.

use rusqlite::Connection;

use crate::projection::{sql, ProjectionError};

/// A column of a read-model table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// Stored as `BIGINT` in PostgreSQL (SQLite's `INTEGER` affinity), else `TEXT`.
    pub integer: bool,
    pub not_null: bool,
}

/// A read-model table: columns in order, its primary key, and its secondary indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    pub name: String,
    pub columns: Vec<Column>,
    /// Primary-key column names in key order.
    pub primary_key: Vec<String>,
    /// `CREATE INDEX` statements as SQLite stores them.
    pub indexes: Vec<String>,
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl TableSchema {
    /// Reads `table`'s schema from SQLite's catalogue.
    pub fn read(conn: &Connection, table: &str) -> Result<TableSchema, ProjectionError> {
        let mut columns = Vec::new();
        let mut keyed: Vec<(i64, String)> = Vec::new();
        let mut stmt = conn
            .prepare(&format!("PRAGMA table_info({})", quote_ident(table)))
            .map_err(sql("reading a table's columns"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, bool>(3)?,
                    r.get::<_, i64>(5)?,
                ))
            })
            .map_err(sql("reading a table's columns"))?;
        for row in rows {
            let (name, declared, not_null, pk) = row.map_err(sql("reading a table's columns"))?;
            if pk > 0 {
                keyed.push((pk, name.clone()));
            }
            columns.push(Column {
                integer: declared.to_ascii_uppercase().contains("INT"),
                // SQLite lets a TEXT primary key be NULL; PostgreSQL never does.
                not_null: not_null || pk > 0,
                name,
            });
        }
        if columns.is_empty() {
            return Err(ProjectionError::CorruptRow {
                table: "sqlite_schema",
                message: format!("table {table:?} does not exist"),
            });
        }
        keyed.sort();
        let primary_key: Vec<String> = keyed.into_iter().map(|(_, name)| name).collect();
        if primary_key.is_empty() {
            return Err(ProjectionError::CorruptRow {
                table: "sqlite_schema",
                message: format!("table {table:?} has no primary key, so it cannot be replicated"),
            });
        }
        let indexes = conn
            .prepare(
                "SELECT sql FROM sqlite_schema
                 WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL ORDER BY name",
            )
            .and_then(|mut s| {
                s.query_map([table], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(sql("reading a table's indexes"))?;
        Ok(TableSchema {
            name: table.to_owned(),
            columns,
            primary_key,
            indexes,
        })
    }

    /// SQLite: each row as one JSON object of all its columns (types kept).
    pub fn json_row_expr(&self, prefix: &str) -> String {
        let fields: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("'{}', {prefix}{}", c.name, quote_ident(&c.name)))
            .collect();
        format!("json_object({})", fields.join(", "))
    }

    /// SQLite: the primary key of a row as a JSON object.
    pub fn json_key_expr(&self, prefix: &str) -> String {
        let fields: Vec<String> = self
            .primary_key
            .iter()
            .map(|c| format!("'{c}', {prefix}{}", quote_ident(c)))
            .collect();
        format!("json_object({})", fields.join(", "))
    }

    /// PostgreSQL: drop and create the table and its indexes.
    ///
    /// Secondary indexes are created non-unique: uniqueness is the SQLite projection's
    /// invariant, and a batch shipped as deletes-then-upserts per table may pass through a
    /// state no single SQLite statement did.
    pub fn postgres_recreate(&self) -> String {
        let mut ddl = format!(
            "DROP TABLE IF EXISTS {} CASCADE;\n",
            quote_ident(&self.name)
        );
        ddl.push_str(&self.postgres_create("CREATE TABLE"));
        for index in &self.indexes {
            let statement = index.trim();
            let statement = match statement.get(..19) {
                Some(head) if head.eq_ignore_ascii_case("CREATE UNIQUE INDEX") => {
                    format!("CREATE INDEX{}", &statement[19..])
                }
                _ => statement.to_owned(),
            };
            ddl.push_str(&statement);
            ddl.push_str(";\n");
        }
        ddl
    }

    /// PostgreSQL: create the table if it is missing (no indexes).
    pub fn postgres_create_if_missing(&self) -> String {
        self.postgres_create("CREATE TABLE IF NOT EXISTS")
    }

    fn postgres_create(&self, create: &str) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                format!(
                    "{} {}{}",
                    quote_ident(&c.name),
                    if c.integer { "BIGINT" } else { "TEXT" },
                    if c.not_null { " NOT NULL" } else { "" }
                )
            })
            .collect();
        format!(
            "{create} {} ({}, PRIMARY KEY ({}));\n",
            quote_ident(&self.name),
            columns.join(", "),
            self.quoted_key()
        )
    }

    /// The primary-key columns, quoted and comma-separated.
    pub fn quoted_key(&self) -> String {
        self.primary_key
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn quoted_name(&self) -> String {
        quote_ident(&self.name)
    }

    pub fn quoted_columns(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> TableSchema {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE usage (account TEXT NOT NULL, day TEXT, amount INTEGER NOT NULL, note TEXT,
                 PRIMARY KEY (account, day));
             CREATE UNIQUE INDEX usage_by_note ON usage (note);
             CREATE INDEX usage_by_day ON usage (day) WHERE note IS NOT NULL;",
        )
        .unwrap();
        TableSchema::read(&conn, "usage").unwrap()
    }

    #[test]
    fn reads_columns_key_and_indexes_in_order() {
        let t = table();
        let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["account", "day", "amount", "note"]);
        assert_eq!(t.primary_key, ["account", "day"]);
        assert!(
            t.columns[1].not_null,
            "a key column is NOT NULL in PostgreSQL"
        );
        assert!(t.columns[2].integer && !t.columns[0].integer);
        assert_eq!(t.indexes.len(), 2);
    }

    #[test]
    fn postgres_ddl_keeps_types_key_and_partial_indexes_without_uniqueness() {
        let ddl = table().postgres_recreate();
        assert!(ddl.starts_with("DROP TABLE IF EXISTS \"usage\" CASCADE;"));
        assert!(ddl.contains(
            "CREATE TABLE \"usage\" (\"account\" TEXT NOT NULL, \"day\" TEXT NOT NULL, \
             \"amount\" BIGINT NOT NULL, \"note\" TEXT, PRIMARY KEY (\"account\", \"day\"));"
        ));
        assert!(ddl.contains("CREATE INDEX usage_by_day ON usage (day) WHERE note IS NOT NULL;"));
        assert!(ddl.contains("CREATE INDEX usage_by_note ON usage (note);"));
        assert!(!ddl.contains("UNIQUE"));
    }

    #[test]
    fn a_table_without_a_primary_key_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE loose (a TEXT)").unwrap();
        assert!(TableSchema::read(&conn, "loose").is_err());
        assert!(TableSchema::read(&conn, "missing").is_err());
    }
}
