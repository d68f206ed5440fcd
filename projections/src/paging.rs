//! Keyset paging for list queries. A list has a natural order on `(primary, sid)` (for calls:
//! newest first). A page is read either by offset (Twilio's `Page` index) or relative to an
//! anchor item (Twilio's opaque `PageToken`): strictly after it or strictly before it in list
//! order. Anchors keep pages stable while new rows arrive.

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, Row};
use time::OffsetDateTime;

use crate::projection::{sql, store_time, ProjectionError};

/// The sort key of one item of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub primary: String,
    pub sid: String,
}

/// Where a page starts, relative to an item of the previous/next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchor {
    /// The items following this key in list order.
    After(SortKey),
    /// The items preceding this key in list order.
    Before(SortKey),
}

/// Which page to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Items per page (callers clamp it; at least 1 is used).
    pub size: usize,
    /// Items to skip when there is no anchor.
    pub offset: usize,
    pub anchor: Option<Anchor>,
}

impl PageRequest {
    pub fn first(size: usize) -> PageRequest {
        PageRequest {
            size,
            offset: 0,
            anchor: None,
        }
    }
}

/// One page of items in list order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Items exist after the last one of this page.
    pub more_after: bool,
    /// Items exist before the first one of this page.
    pub more_before: bool,
}

/// Natural order of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Ascending,
    Descending,
}

/// The SQL pieces of a keyset page query.
pub(crate) struct KeysetSql {
    /// A condition to AND into the WHERE clause, if anchored.
    pub condition: Option<String>,
    pub params: Vec<Value>,
    /// `ORDER BY … LIMIT … OFFSET …`.
    pub tail: String,
    /// Rows come back in reverse list order (reading before an anchor).
    pub reversed: bool,
    size: usize,
}

pub(crate) fn keyset(
    request: &PageRequest,
    order: Order,
    primary_col: &str,
    sid_col: &str,
) -> KeysetSql {
    let size = request.size.max(1);
    let limit = size + 1;
    // Reading before an anchor walks the list backwards from it.
    let (reversed, anchor) = match &request.anchor {
        None => (false, None),
        Some(Anchor::After(key)) => (false, Some(key)),
        Some(Anchor::Before(key)) => (true, Some(key)),
    };
    let walk = match (order, reversed) {
        (Order::Ascending, false) | (Order::Descending, true) => Order::Ascending,
        _ => Order::Descending,
    };
    let (cmp, dir) = match walk {
        Order::Ascending => (">", "ASC"),
        Order::Descending => ("<", "DESC"),
    };
    let (condition, params) = match anchor {
        None => (None, Vec::new()),
        Some(key) => (
            Some(format!(
                "({primary_col} {cmp} ? OR ({primary_col} = ? AND {sid_col} {cmp} ?))"
            )),
            vec![
                Value::Text(key.primary.clone()),
                Value::Text(key.primary.clone()),
                Value::Text(key.sid.clone()),
            ],
        ),
    };
    let offset = if anchor.is_none() { request.offset } else { 0 };
    KeysetSql {
        condition,
        params,
        tail: format!(
            "ORDER BY {primary_col} {dir}, {sid_col} {dir} LIMIT {limit} OFFSET {offset}"
        ),
        reversed,
        size,
    }
}

impl KeysetSql {
    /// Turns the fetched rows (one more than a page, if available) into a page.
    pub(crate) fn finish<T>(&self, request: &PageRequest, mut rows: Vec<T>) -> Page<T> {
        let extra = rows.len() > self.size;
        rows.truncate(self.size);
        if self.reversed {
            rows.reverse();
            Page {
                items: rows,
                more_after: true,
                more_before: extra,
            }
        } else {
            Page {
                items: rows,
                more_after: extra,
                more_before: request.anchor.is_some() || request.offset > 0,
            }
        }
    }
}

/// Builds `SELECT … WHERE <conditions AND keyset> <tail>` parameters in order.
pub(crate) fn where_clause(conditions: &[String]) -> String {
    if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    }
}

/// The sort key of a list item ordered by creation time, then SID.
pub fn created_sort_key(date_created: OffsetDateTime, sid: &str) -> SortKey {
    SortKey {
        primary: store_time(date_created),
        sid: sid.to_owned(),
    }
}

/// What a list reads: its `SELECT … FROM …`, its natural order and the columns of its sort
/// key.
pub(crate) struct ListQuery<'a> {
    pub select: &'a str,
    pub order: Order,
    pub primary_col: &'a str,
    pub sid_col: &'a str,
    /// For errors: `listing calls`, …
    pub context: &'static str,
}

/// Reads one page of a list: `select` filtered by `conditions` (bound to `values`, in
/// order), each row read by `read` and turned into an item by `convert`.
pub(crate) fn read_page<R, T>(
    conn: &Connection,
    list: &ListQuery<'_>,
    mut conditions: Vec<String>,
    mut values: Vec<Value>,
    page: &PageRequest,
    read: impl FnMut(&Row<'_>) -> rusqlite::Result<R>,
    convert: impl FnMut(R) -> Result<T, ProjectionError>,
) -> Result<Page<T>, ProjectionError> {
    let keyset = keyset(page, list.order, list.primary_col, list.sid_col);
    if let Some(condition) = &keyset.condition {
        conditions.push(condition.clone());
        values.extend(keyset.params.iter().cloned());
    }
    let query = format!(
        "{} {} {}",
        list.select,
        where_clause(&conditions),
        keyset.tail
    );
    let raws = conn
        .prepare(&query)
        .and_then(|mut s| {
            s.query_map(params_from_iter(values), read)?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(sql(list.context))?;
    let items = raws
        .into_iter()
        .map(convert)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(keyset.finish(page, items))
}
