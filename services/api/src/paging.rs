//! Twilio 2010-04-01 paging: `PageSize` (default 50, at most 1000), `Page` (index),
//! `PageToken` (opaque: `PA`/`PB` + hex of the anchor item's sort key, meaning "after" or
//! "before" it), and the page envelope with `first_page_uri`, `next_page_uri`, …

use dialtone_projections::paging::{Anchor, PageRequest, SortKey};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::params::{encode_query, Params};

pub const DEFAULT_PAGE_SIZE: usize = 50;
pub const MAX_PAGE_SIZE: usize = 1000;

const PAGING_PARAMS: &[&str] = &["PageSize", "Page", "PageToken"];

/// The page a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paging {
    pub size: usize,
    pub page: usize,
    pub anchor: Option<Anchor>,
}

impl Paging {
    pub fn parse(params: &Params) -> Result<Paging, ApiError> {
        let number = |name: &str| -> Result<Option<usize>, ApiError> {
            params
                .non_empty(name)
                .map(|v| {
                    v.parse::<usize>().map_err(|_| {
                        ApiError::invalid(format!("{name} must be a non-negative integer"))
                    })
                })
                .transpose()
        };
        let size = number("PageSize")?
            .unwrap_or(DEFAULT_PAGE_SIZE)
            .clamp(1, MAX_PAGE_SIZE);
        let page = number("Page")?.unwrap_or(0);
        if page > 1_000_000 {
            return Err(ApiError::invalid("Page is too large"));
        }
        let anchor = params
            .non_empty("PageToken")
            .map(|token| {
                decode_token(token).ok_or_else(|| ApiError::invalid("PageToken is invalid"))
            })
            .transpose()?;
        Ok(Paging { size, page, anchor })
    }

    /// The query for the read model.
    pub fn request(&self) -> PageRequest {
        PageRequest {
            size: self.size,
            offset: if self.anchor.is_some() {
                0
            } else {
                self.page.saturating_mul(self.size)
            },
            anchor: self.anchor.clone(),
        }
    }
}

pub fn encode_token(anchor: &Anchor) -> String {
    let (prefix, key) = match anchor {
        Anchor::After(key) => ("PA", key),
        Anchor::Before(key) => ("PB", key),
    };
    format!(
        "{prefix}{}",
        hex::encode(format!("{}\n{}", key.primary, key.sid))
    )
}

pub fn decode_token(token: &str) -> Option<Anchor> {
    let (prefix, encoded) = (token.get(..2)?, token.get(2..)?);
    let decoded = String::from_utf8(hex::decode(encoded).ok()?).ok()?;
    let (primary, sid) = decoded.split_once('\n')?;
    let key = SortKey {
        primary: primary.to_owned(),
        sid: sid.to_owned(),
    };
    match prefix {
        "PA" => Some(Anchor::After(key)),
        "PB" => Some(Anchor::Before(key)),
        _ => None,
    }
}

/// A neighbouring page: its index and, for keyset lists, the token that reaches it.
pub struct Link {
    pub page: usize,
    pub token: Option<String>,
}

/// The Twilio page envelope around `items` (stored under `key`).
pub fn envelope(
    key: &str,
    items: Vec<Value>,
    path: &str,
    params: &Params,
    paging: &Paging,
    next: Option<Link>,
    previous: Option<Link>,
) -> Value {
    let filters = params.encode_without(PAGING_PARAMS);
    let uri = |page: usize, token: Option<&str>| {
        let mut pairs = filters.clone();
        pairs.push(("PageSize".into(), paging.size.to_string()));
        pairs.push(("Page".into(), page.to_string()));
        if let Some(token) = token {
            pairs.push(("PageToken".into(), token.to_owned()));
        }
        format!("{path}?{}", encode_query(&pairs))
    };
    let current_token = paging.anchor.as_ref().map(encode_token);
    let start = paging.page.saturating_mul(paging.size);
    let end = start + items.len().saturating_sub(1);
    json!({
        key: items,
        "first_page_uri": uri(0, None),
        "next_page_uri": next.map(|l| uri(l.page, l.token.as_deref())),
        "previous_page_uri": previous.map(|l| uri(l.page, l.token.as_deref())),
        "page": paging.page,
        "page_size": paging.size,
        "start": start,
        "end": end,
        "uri": uri(paging.page, current_token.as_deref()),
    })
}

/// The page `paging` asks for of a list held in memory (`Page` and `PageSize`, no tokens):
/// the envelope around those of `all` that fall in it, with links to its neighbours.
pub fn page_of<T>(
    key: &str,
    all: &[T],
    to_json: impl Fn(&T) -> Value,
    path: &str,
    params: &Params,
    paging: &Paging,
) -> Value {
    let offset = paging.page.saturating_mul(paging.size).min(all.len());
    let until = offset.saturating_add(paging.size).min(all.len());
    let items = all[offset..until].iter().map(to_json).collect();
    let next = (until < all.len()).then(|| Link {
        page: paging.page + 1,
        token: None,
    });
    let previous = (paging.page > 0).then(|| Link {
        page: paging.page - 1,
        token: None,
    });
    envelope(key, items, path, params, paging, next, previous)
}

/// Links of a keyset page read from the projections.
pub fn keyset_links<T>(
    paging: &Paging,
    page: &dialtone_projections::paging::Page<T>,
    sort_key: impl Fn(&T) -> SortKey,
) -> (Option<Link>, Option<Link>) {
    let next = match (page.more_after, page.items.last()) {
        (true, Some(last)) => Some(Link {
            page: paging.page + 1,
            token: Some(encode_token(&Anchor::After(sort_key(last)))),
        }),
        _ => None,
    };
    let previous = match (page.more_before, page.items.first()) {
        (true, Some(first)) => Some(Link {
            page: paging.page.saturating_sub(1),
            token: Some(encode_token(&Anchor::Before(sort_key(first)))),
        }),
        _ => None,
    };
    (next, previous)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let anchor = Anchor::After(SortKey {
            primary: "2025-01-01T00:00:00.000000Z".into(),
            sid: "CA0123".into(),
        });
        assert_eq!(decode_token(&encode_token(&anchor)), Some(anchor));
        for bad in ["", "P", "PAzz", "PX00", "PA00"] {
            assert_eq!(decode_token(bad), None, "{bad}");
        }
    }

    #[test]
    fn page_size_defaults_and_clamps() {
        let p = |q: &str| Paging::parse(&Params::parse(q.as_bytes()));
        assert_eq!(p("").unwrap().size, 50);
        assert_eq!(p("PageSize=5000").unwrap().size, 1000);
        assert_eq!(p("PageSize=0").unwrap().size, 1);
        assert_eq!(p("PageSize=3&Page=2").unwrap().request().offset, 6);
        assert!(p("PageSize=-1").is_err());
        assert!(p("PageToken=nope").is_err());
    }
}
