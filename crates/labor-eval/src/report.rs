//! Rendering a [`Report`] as Markdown and as one self-contained HTML page (inline CSS and
//! SVG, no scripts, no external resources), so it opens from disk in any browser.
//!
//! Order: the headline plots (ratio to the oracle, log axis), the headline table, the models
//! table (what each model was given), the detail tables, notes, the other plots, and each
//! model's provenance.

use crate::evaluate::{Plot, Report};
use crate::table::{Table, html_escape};

/// Where a report came from, shown at its top.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    pub title: String,
    /// e.g. `labor 0.1.0 (git abc1234)`.
    pub version: String,
    /// The command line that produced the report.
    pub command: String,
    /// Extra sections (e.g. the configuration of a reproduction run): (title, preformatted text).
    pub sections: Vec<(String, String)>,
}

/// Every table a reader sees, in order (the headline first, then the models table).
pub fn display_tables(r: &Report) -> Vec<&Table> {
    [&r.headline, &r.model_table]
        .into_iter()
        .chain(r.tables.iter())
        .collect()
}

pub fn markdown(r: &Report, p: &Provenance) -> String {
    let mut out = format!("# {}\n\n", p.title);
    out += &format!("Produced by {} with `{}`.\n\n", p.version, p.command);
    for pl in &r.headline_plots {
        out += &format!("![{}](plots/{}.svg)\n\n", pl.title, pl.name);
    }
    for t in display_tables(r) {
        out += &t.to_markdown();
        out += "\n";
    }
    if !r.notes.is_empty() {
        out += "## Notes\n\n";
        for n in &r.notes {
            out += &format!("- {n}\n");
        }
        out += "\n";
    }
    out += "## Plots\n\n";
    for pl in &r.plots {
        out += &format!("- [{}](plots/{}.svg)\n", pl.title, pl.name);
    }
    out += "\n## Model provenance\n\n";
    for m in &r.models {
        out += &format!("- **{}**: {} rows from `{}`\n", m.name, m.rows, m.source);
    }
    out
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;\
padding:0 1em;color:#222}h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}\
table.t{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em}\
table.t th,table.t td{border:1px solid #ccc;padding:3px 7px;text-align:right}\
table.t th{background:#f3f3f3}table.t td:first-child,table.t td:nth-child(2){text-align:left}\
.caption{color:#555;font-size:.9em;max-width:70em}.plots{display:flex;flex-wrap:wrap;gap:1em}\
figure{margin:0;border:1px solid #ddd;padding:.5em}figcaption{font-size:.85em;color:#555}\
pre{background:#f7f7f7;padding:.7em;overflow:auto;font-size:.8em;max-height:30em}\
details{margin:.4em 0}figure.headline{display:inline-block;margin:.5em 0 1em}\
table.t[data-name=models] td:nth-child(3),table.t[data-name=models] td:nth-child(6),\
table.t[data-name=models] td:nth-child(7),table.t[data-name=models] td:nth-child(10)\
{white-space:nowrap}";

/// An SVG plot as an inline figure (minus any XML declaration).
fn figure(pl: &Plot, class: &str) -> String {
    let svg = pl.svg.trim_start_matches(|c| c != '<');
    let svg = match svg.strip_prefix("<?xml") {
        Some(rest) => &rest[rest.find("?>").map_or(0, |i| i + 2)..],
        None => svg,
    };
    format!(
        "<figure id=\"plot-{}\"{class}>{}<figcaption>{}</figcaption></figure>\n",
        html_escape(&pl.name),
        svg,
        html_escape(&pl.title)
    )
}

pub fn html(r: &Report, p: &Provenance) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{}</title><style>{CSS}</style></head><body>\n<h1>{}</h1>\n\
         <p>Produced by {} with <code>{}</code>.</p>\n",
        html_escape(&p.title),
        html_escape(&p.title),
        html_escape(&p.version),
        html_escape(&p.command)
    );
    out += "<h2>Headline</h2>\n";
    for pl in &r.headline_plots {
        out += &figure(pl, " class=\"headline\"");
    }
    out += &r.headline.to_html();
    out += &r.model_table.to_html();
    out += "<h2>Tables</h2>\n";
    for t in &r.tables {
        out += &t.to_html();
    }
    if !r.notes.is_empty() {
        out += "<h2>Notes</h2>\n<ul>\n";
        for n in &r.notes {
            out += &format!("<li>{}</li>\n", html_escape(n));
        }
        out += "</ul>\n";
    }
    out += "<h2>Plots</h2>\n<div class=\"plots\">\n";
    for pl in &r.plots {
        out += &figure(pl, "");
    }
    out += "</div>\n<h2>Model provenance</h2>\n";
    for m in &r.models {
        out += &format!(
            "<details><summary><b>{}</b>: {} rows from <code>{}</code></summary>\n",
            html_escape(&m.name),
            m.rows,
            html_escape(&m.source)
        );
        for (k, v) in &m.metadata {
            out += &format!("<p>{}</p><pre>{}</pre>\n", html_escape(k), html_escape(v));
        }
        out += "</details>\n";
    }
    for (title, text) in &p.sections {
        out += &format!(
            "<h2>{}</h2>\n<pre>{}</pre>\n",
            html_escape(title),
            html_escape(text)
        );
    }
    out + "</body></html>\n"
}
