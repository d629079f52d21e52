//! Panels as CSV: a header naming the columns (any order), one row per person-year.

use std::io::{Read, Write};

use super::{cell, output_columns};
use crate::panel::{BuildOptions, BuildReport, ColumnMap, Panel, PanelBuilder, RawRow};
use crate::problem::{Location, Problem, Problems};
use crate::taxonomy::Taxonomy;

/// Reads and validates a panel CSV. Problems carry line numbers (the header is line 1).
pub fn read_panel_csv<R: Read>(
    reader: R,
    taxonomy: Taxonomy,
    options: BuildOptions,
) -> Result<(Panel, BuildReport), Problems> {
    let mut rdr = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    let mut rec = ::csv::StringRecord::new();
    let header = match rdr.read_record(&mut rec) {
        Ok(true) => rec.iter().map(str::to_string).collect::<Vec<_>>(),
        Ok(false) => {
            return Err(Problems(vec![Problem::global(
                "header",
                "an empty file",
                "a header line naming the panel columns",
            )]));
        }
        Err(e) => {
            return Err(Problems(vec![Problem::at(
                Location::line(1),
                "csv",
                e.to_string(),
                "well-formed UTF-8 CSV",
            )]));
        }
    };
    let map = ColumnMap::from_header(&header, Location::line(1))?;
    let mut builder = PanelBuilder::new(taxonomy, options, &map);
    loop {
        match rdr.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                let line = rec.position().map(|p| p.line()).unwrap_or(0);
                let loc = Location::line(line);
                if rec.len() != header.len() {
                    builder.problem(Problem::at(
                        loc,
                        "row",
                        format!("{} field(s)", rec.len()),
                        format!("{} fields, as in the header", header.len()),
                    ));
                    continue;
                }
                let fields: Vec<Option<&str>> = rec.iter().map(Some).collect();
                builder.push(&RawRow::from_fields(loc, &map, &fields));
            }
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                builder.problem(Problem::at(
                    Location::line(line),
                    "csv",
                    e.to_string(),
                    "well-formed UTF-8 CSV",
                ));
                if !matches!(e.kind(), ::csv::ErrorKind::Utf8 { .. }) {
                    break;
                }
            }
        }
    }
    builder.finish()
}

/// Writes a panel as CSV, persons in panel order and records by year.
pub fn write_panel_csv<W: Write>(panel: &Panel, writer: W) -> ::csv::Result<()> {
    let cols = output_columns(panel);
    let mut w = ::csv::Writer::from_writer(writer);
    w.write_record(cols.iter().map(|c| c.name()))?;
    let mut row: Vec<String> = Vec::with_capacity(cols.len());
    for p in &panel.persons {
        for r in &p.records {
            row.clear();
            row.extend(cols.iter().map(|&c| {
                cell(panel, p, r, c).unwrap_or_else(|| {
                    if c.is_covariate() {
                        crate::MISSING.to_string()
                    } else {
                        String::new()
                    }
                })
            }));
            w.write_record(&row)?;
        }
    }
    w.flush()?;
    Ok(())
}
