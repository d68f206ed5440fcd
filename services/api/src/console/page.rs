//! The console's page layout, stylesheet and HTML escaping.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::Session;

/// `text` escaped for HTML text and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One page: a title, the navigation when logged in, messages, and the body.
pub(crate) struct Page {
    title: String,
    nav: Option<(String, String)>,
    messages: String,
    body: String,
}

const NAV: &[(&str, &str)] = &[
    ("/console/calls", "Calls"),
    ("/console/numbers", "Numbers"),
    ("/console/usage", "Usage"),
    ("/console/events", "Live events"),
];

impl Page {
    pub fn new(title: &str, session: Option<&Session>) -> Page {
        Page {
            title: title.to_owned(),
            nav: session.map(|s| (s.sid().to_owned(), s.csrf.clone())),
            messages: String::new(),
            body: String::new(),
        }
    }

    /// An error message, announced to screen readers.
    pub fn error(mut self, message: &str) -> Page {
        self.messages.push_str(&format!(
            "<p class=\"message error\" role=\"alert\">{}</p>",
            escape(message)
        ));
        self
    }

    /// A confirmation.
    pub fn notice(mut self, message: &str) -> Page {
        self.messages.push_str(&format!(
            "<p class=\"message notice\" role=\"status\">{}</p>",
            escape(message)
        ));
        self
    }

    /// Appends trusted HTML (callers escape what they interpolate).
    pub fn html(mut self, html: &str) -> Page {
        self.body.push_str(html);
        self
    }

    pub fn respond(self, status: StatusCode) -> Response {
        let nav = match &self.nav {
            None => String::new(),
            Some((sid, csrf)) => {
                let links: String = NAV
                    .iter()
                    .map(|(href, label)| {
                        let current = if self.title.starts_with(label)
                            || (self.title.starts_with("Call ") && *label == "Calls")
                        {
                            " aria-current=\"page\""
                        } else {
                            ""
                        };
                        format!("<li><a href=\"{href}\"{current}>{label}</a></li>")
                    })
                    .collect();
                format!(
                    "<nav aria-label=\"Console\"><ul>{links}</ul>\
                     <form method=\"post\" action=\"/console/logout\" class=\"logout\">\
                     <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                     <span class=\"account\" title=\"Account\">{}</span> <button type=\"submit\">Log out</button></form></nav>",
                    escape(sid)
                )
            }
        };
        let html = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{title} · Dialtone</title><link rel=\"stylesheet\" href=\"/console/assets/console.css\"></head>\
             <body><a class=\"skip\" href=\"#main\">Skip to content</a>\
             <header><a class=\"brand\" href=\"/console\">Dialtone</a>{nav}</header>\
             <main id=\"main\"><h1>{title}</h1>{messages}{body}</main></body></html>",
            title = escape(&self.title),
            messages = self.messages,
            body = self.body,
        );
        (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
                (header::X_FRAME_OPTIONS, "DENY"),
            ],
            html,
        )
            .into_response()
    }
}

/// The stylesheet: system fonts, readable contrast, visible focus, one column on phones.
const STYLESHEET: &str = r#"
:root { --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --bg: #ffffff; --accent: #0b5cad; --bad: #b42318; --good: #116329; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
a { color: var(--accent); }
a:focus, button:focus, input:focus, select:focus, audio:focus { outline: 3px solid #f0a000; outline-offset: 2px; }
.skip { position: absolute; left: -1000px; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
.skip:focus { left: 8px; top: 8px; background: #fff; padding: 4px 8px; z-index: 10; }
header { display: flex; flex-wrap: wrap; align-items: center; gap: 12px; padding: 10px 16px; border-bottom: 1px solid var(--line); }
.brand { font-weight: 700; text-decoration: none; font-size: 1.2rem; }
nav { display: flex; flex-wrap: wrap; align-items: center; gap: 12px; flex: 1; }
nav ul { display: flex; flex-wrap: wrap; gap: 4px 16px; list-style: none; margin: 0; padding: 0; flex: 1; }
nav a[aria-current="page"] { font-weight: 700; text-decoration: none; }
.logout { display: flex; gap: 8px; align-items: center; }
.account { color: var(--muted); font-family: ui-monospace, monospace; font-size: 0.8rem; overflow-wrap: anywhere; }
main { padding: 16px; max-width: 1100px; margin: 0 auto; }
h1 { font-size: 1.5rem; margin: 0.2em 0 0.6em; overflow-wrap: anywhere; }
h2 { font-size: 1.15rem; margin-top: 1.5em; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 16px; margin: 12px 0; }
.narrow { max-width: 420px; }
label { display: block; font-weight: 600; margin-top: 10px; }
input, select { font: inherit; padding: 6px 8px; border: 1px solid #8c959f; border-radius: 6px; width: 100%; max-width: 420px; }
button { font: inherit; padding: 6px 14px; margin-top: 10px; border: 1px solid var(--accent); background: var(--accent); color: #fff; border-radius: 6px; cursor: pointer; }
.inline { display: flex; flex-wrap: wrap; gap: 8px; align-items: end; }
.inline label { margin-top: 0; }
.inline button { margin-top: 0; }
.message { padding: 8px 12px; border-radius: 6px; }
.error { background: #fde7e9; color: var(--bad); }
.notice { background: #e6f4ea; color: var(--good); }
.table { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 0.85rem; color: var(--muted); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code, .mono { font-family: ui-monospace, monospace; font-size: 0.85rem; overflow-wrap: anywhere; }
.pager { display: flex; gap: 16px; margin: 12px 0; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
ol.timeline { list-style: none; padding: 0; margin: 0; }
ol.timeline li { display: grid; grid-template-columns: 6em 16em 1fr; gap: 8px; padding: 4px 0; border-bottom: 1px solid var(--line); }
ol.timeline .offset { font-variant-numeric: tabular-nums; color: var(--muted); text-align: right; }
svg.chart { width: 100%; height: auto; max-height: 320px; }
svg.chart text { font-size: 11px; fill: var(--muted); }
#events li { font-family: ui-monospace, monospace; font-size: 0.85rem; border-bottom: 1px solid var(--line); padding: 2px 0; overflow-wrap: anywhere; }
@media (max-width: 640px) {
  header { flex-direction: column; align-items: stretch; }
  nav { flex-direction: column; align-items: flex-start; }
  ol.timeline li { grid-template-columns: 5em 1fr; }
  ol.timeline .facts { grid-column: 1 / -1; }
  table.responsive thead { display: none; }
  table.responsive tr { display: block; border-bottom: 2px solid var(--line); padding: 6px 0; }
  table.responsive td { display: grid; grid-template-columns: 9em 1fr; border: 0; padding: 2px 0; }
  table.responsive td::before { content: attr(data-label); color: var(--muted); font-size: 0.85rem; }
  td.num { text-align: left; }
}
"#;

#[utoipa::path(
    get,
    operation_id = "console_stylesheet",
    path = "/console/assets/console.css",
    tag = "Console",
    summary = "The console's stylesheet",
    responses((status = 200, description = "CSS", content_type = "text/css", body = String)),
)]
pub(crate) async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// A `<table>` with a caption, header cells and rows (cells already HTML); `responsive`
/// tables become labelled blocks on narrow screens.
pub(crate) fn table(
    caption: &str,
    headers: &[&str],
    rows: &[Vec<String>],
    numeric: &[usize],
) -> String {
    let head: String = headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let class = if numeric.contains(&i) {
                " class=\"num\""
            } else {
                ""
            };
            format!("<th scope=\"col\"{class}>{}</th>", escape(h))
        })
        .collect();
    let body: String = rows
        .iter()
        .map(|row| {
            let cells: String = row
                .iter()
                .enumerate()
                .map(|(i, cell)| {
                    let class = if numeric.contains(&i) {
                        " class=\"num\""
                    } else {
                        ""
                    };
                    let label = headers.get(i).map(|h| escape(h)).unwrap_or_default();
                    format!("<td data-label=\"{label}\"{class}>{cell}</td>")
                })
                .collect();
            format!("<tr>{cells}</tr>")
        })
        .collect();
    format!(
        "<div class=\"table\"><table class=\"responsive\"><caption class=\"visually-hidden\">{}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>",
        escape(caption)
    )
}
