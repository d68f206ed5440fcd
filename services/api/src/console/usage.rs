//! The console's usage page: a period's daily usage as a bar chart (SVG, drawn here) and a
//! table, with the CSV the REST API gives for it.

use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

use super::numbers::json_of;
use super::page::table;
use super::{error_page, escape, Page, Session};
use crate::params::encode_query;
use crate::ApiState;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Period {
    start_date: Option<String>,
    end_date: Option<String>,
}

impl Period {
    /// The period asked for, defaulting to this month so far.
    fn dates(&self) -> (String, String) {
        let today = OffsetDateTime::now_utc().date();
        let first = today.replace_day(1).unwrap_or(today);
        let day = |d: time::Date| dialtone_projections::billing::format_day(d);
        (
            self.start_date
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| day(first)),
            self.end_date
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| day(today)),
        )
    }

    fn query(&self) -> String {
        let (start, end) = self.dates();
        encode_query(&[("StartDate".into(), start), ("EndDate".into(), end)])
    }
}

async fn daily(
    state: ApiState,
    session: &Session,
    period: &Period,
    file: &str,
) -> Result<Response, crate::ApiError> {
    crate::usage::by_period(
        State(state),
        session.auth.clone(),
        Path((session.sid().to_owned(), file.to_owned())),
        RawQuery(Some(format!(
            "{}&Category=calls&PageSize=1000",
            period.query()
        ))),
    )
    .await
}

/// Bars of `calls` minutes per day; each bar names its day, calls, minutes and price.
fn chart(records: &[Value]) -> String {
    const WIDTH: f64 = 720.0;
    const HEIGHT: f64 = 240.0;
    const BASE: f64 = 200.0;
    let max = records
        .iter()
        .filter_map(|r| r["usage"].as_str()?.parse::<f64>().ok())
        .fold(1.0f64, f64::max);
    let slot = WIDTH / records.len().max(1) as f64;
    let mut bars = String::new();
    for (i, record) in records.iter().enumerate() {
        let minutes: f64 = record["usage"]
            .as_str()
            .and_then(|u| u.parse().ok())
            .unwrap_or(0.0);
        let height = (minutes / max) * (BASE - 20.0);
        let x = i as f64 * slot + slot * 0.15;
        let day = record["start_date"].as_str().unwrap_or_default();
        let label = format!(
            "{day}: {} calls, {} minutes, {} {}",
            record["count"].as_str().unwrap_or("0"),
            record["usage"].as_str().unwrap_or("0"),
            record["price"].as_str().unwrap_or("0"),
            record["price_unit"]
                .as_str()
                .unwrap_or_default()
                .to_uppercase()
        );
        bars.push_str(&format!(
            "<rect class=\"bar\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{height:.1}\" fill=\"#0b5cad\" data-day=\"{}\" data-count=\"{}\" data-minutes=\"{}\"><title>{}</title></rect>",
            BASE - height,
            slot * 0.7,
            escape(day),
            escape(record["count"].as_str().unwrap_or("0")),
            escape(record["usage"].as_str().unwrap_or("0")),
            escape(&label)
        ));
        if records.len() <= 16 || i % (records.len() / 8).max(1) == 0 {
            bars.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                x + slot * 0.35,
                BASE + 16.0,
                escape(day.get(5..).unwrap_or(day))
            ));
        }
    }
    format!(
        "<figure class=\"card\"><svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-labelledby=\"chart-title\">\
         <title id=\"chart-title\">Minutes of calls per day (highest {max} minutes)</title>\
         <line x1=\"0\" y1=\"{BASE}\" x2=\"{WIDTH}\" y2=\"{BASE}\" stroke=\"#8c959f\"/>{bars}</svg>\
         <figcaption>Minutes of calls per day; the table below has every figure.</figcaption></figure>"
    )
}

#[utoipa::path(
    get,
    operation_id = "console_usage",
    path = "/console/usage",
    tag = "Console",
    summary = "Usage for a period (StartDate, EndDate): a chart, a table and its CSV",
    responses((status = 200, description = "HTML", content_type = "text/html", body = String)),
)]
pub(crate) async fn usage(
    State(state): State<ApiState>,
    session: Session,
    Query(period): Query<Period>,
) -> Response {
    let (start, end) = period.dates();
    let records = match daily(state.clone(), &session, &period, "Daily.json").await {
        Ok(response) => json_of(response).await["usage_records"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
        Err(error) => {
            return Page::new("Usage", Some(&session))
                .error(&super::api_error_text(&error))
                .respond(error.status)
        }
    };
    let totals = match crate::usage::all_time(
        State(state),
        session.auth.clone(),
        RawQuery(Some(period.query())),
    )
    .await
    {
        Ok(response) => json_of(response).await["usage_records"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
        Err(error) => return error_page(Some(&session), error),
    };
    let rows: Vec<Vec<String>> = totals
        .iter()
        .map(|r| {
            let field = |name: &str| escape(r[name].as_str().unwrap_or_default());
            vec![
                field("category"),
                field("description"),
                field("count"),
                field("usage"),
                format!("{} {}", field("price"), field("price_unit").to_uppercase()),
            ]
        })
        .collect();
    Page::new("Usage", Some(&session))
        .html(&format!(
            "<form method=\"get\" action=\"/console/usage\" class=\"card inline\">\
             <div><label for=\"start\">From</label><input id=\"start\" name=\"StartDate\" type=\"date\" value=\"{start}\"></div>\
             <div><label for=\"end\">To</label><input id=\"end\" name=\"EndDate\" type=\"date\" value=\"{end}\"></div>\
             <button type=\"submit\">Show</button></form>\
             {}<h2>Totals, {start} to {end}</h2>{}\
             <p><a href=\"/console/usage.csv?{}\" download=\"usage-{start}-{end}.csv\">Download the daily records (CSV)</a></p>",
            chart(&records),
            table("Usage per category", &["Category", "Description", "Calls", "Minutes", "Price"], &rows, &[2, 3, 4]),
            escape(&period.query()),
            start = escape(&start),
            end = escape(&end),
        ))
        .respond(StatusCode::OK)
}

#[utoipa::path(
    get,
    operation_id = "console_usage_csv",
    path = "/console/usage.csv",
    tag = "Console",
    summary = "The period's daily usage records as CSV",
    responses((status = 200, description = "CSV", content_type = "text/csv", body = String)),
)]
pub(crate) async fn csv(
    State(state): State<ApiState>,
    session: Session,
    Query(period): Query<Period>,
) -> Response {
    match crate::usage::by_period(
        State(state),
        session.auth.clone(),
        Path((session.sid().to_owned(), "Daily.csv".to_owned())),
        RawQuery(Some(period.query())),
    )
    .await
    {
        Ok(mut response) => {
            let (start, end) = period.dates();
            if let Ok(value) = format!("attachment; filename=\"usage-{start}-{end}.csv\"").parse() {
                response
                    .headers_mut()
                    .insert(header::CONTENT_DISPOSITION, value);
            }
            response.into_response()
        }
        Err(error) => error_page(Some(&session), error),
    }
}
