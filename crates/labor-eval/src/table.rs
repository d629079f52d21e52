//! Result tables, rendered as Markdown, CSV or HTML.

/// A table of formatted cells with a machine name (its CSV file stem) and a human title.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub name: String,
    pub title: String,
    /// What a reader needs to interpret the table (method, class set, exclusions).
    pub caption: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(name: &str, title: &str, header: &[&str]) -> Self {
        Self {
            name: name.into(),
            title: title.into(),
            caption: String::new(),
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.header.len(), "{}: row width", self.name);
        self.rows.push(row);
    }

    pub fn to_markdown(&self) -> String {
        let esc = |s: &str| s.replace('|', "\\|");
        let mut out = format!("### {}\n\n", self.title);
        if !self.caption.is_empty() {
            out += &format!("{}\n\n", self.caption);
        }
        out += &format!(
            "| {} |\n|{}\n",
            self.header
                .iter()
                .map(|h| esc(h))
                .collect::<Vec<_>>()
                .join(" | "),
            "---|".repeat(self.header.len())
        );
        for r in &self.rows {
            out += &format!(
                "| {} |\n",
                r.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")
            );
        }
        out
    }

    /// RFC 4180 CSV: fields with commas, quotes or newlines are quoted.
    pub fn to_csv(&self) -> String {
        let field = |s: &str| {
            if s.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        };
        let line = |r: &[String]| r.iter().map(|c| field(c)).collect::<Vec<_>>().join(",");
        let mut out = line(&self.header) + "\n";
        for r in &self.rows {
            out += &(line(r) + "\n");
        }
        out
    }

    pub fn to_html(&self) -> String {
        let mut out = format!(
            "<h3 id=\"{}\">{}</h3>\n",
            html_escape(&self.name),
            html_escape(&self.title)
        );
        if !self.caption.is_empty() {
            out += &format!("<p class=\"caption\">{}</p>\n", html_escape(&self.caption));
        }
        out += &format!(
            "<table class=\"t\" data-name=\"{}\">\n<thead><tr>",
            html_escape(&self.name)
        );
        for h in &self.header {
            out += &format!("<th>{}</th>", html_escape(h));
        }
        out += "</tr></thead>\n<tbody>\n";
        for r in &self.rows {
            out += "<tr>";
            for c in r {
                out += &format!("<td>{}</td>", html_escape(c));
            }
            out += "</tr>\n";
        }
        out + "</tbody></table>\n"
    }
}

pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A number with `d` decimals; empty for NaN or a missing value.
pub fn num(x: Option<f64>, d: usize) -> String {
    match x {
        Some(v) if v.is_finite() && v.abs() >= 1e6 => format!("{v:.3e}"),
        Some(v) if v.is_finite() => format!("{v:.d$}"),
        Some(v) if v.is_infinite() => if v > 0.0 { "inf" } else { "-inf" }.into(),
        _ => String::new(),
    }
}

/// `estimate [lo, hi]` with `d` decimals.
pub fn with_ci(x: Option<f64>, ci: Option<(f64, f64)>, d: usize) -> String {
    match (x, ci) {
        (Some(_), Some((lo, hi))) => {
            format!("{} [{}, {}]", num(x, d), num(Some(lo), d), num(Some(hi), d))
        }
        _ => num(x, d),
    }
}
