//! Panels as Parquet: typed columns (`year`, `birth_year` int32; `weight` float64; the rest
//! strings), one row per person-year. Readers accept any column types that cast to text.

use std::io::Write;
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int32Builder, StringBuilder};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::ChunkReader;

use super::{cell, output_columns};
use crate::panel::{BuildOptions, BuildReport, Column, ColumnMap, Panel, PanelBuilder, RawRow};
use crate::problem::{Location, Problem, Problems};
use crate::taxonomy::Taxonomy;

const BATCH_ROWS: usize = 65_536;

fn data_type(c: Column) -> DataType {
    match c {
        Column::Year | Column::BirthYear => DataType::Int32,
        Column::Weight => DataType::Float64,
        _ => DataType::Utf8,
    }
}

/// Opens a Parquet stream for reading, checking what the `parquet` crate would otherwise
/// panic on, over-allocate for or loop on: the footer must be well-formed Thrift, every column
/// chunk's byte range (from its metadata) must be non-negative and lie inside the stream, and
/// every page header inside it must declare sizes that fit its chunk and, for Snappy, that
/// Snappy can produce (see [`super::parquet_check`]).
pub fn open_parquet<R: ChunkReader + 'static>(
    reader: R,
) -> Result<ParquetRecordBatchReaderBuilder<R>, String> {
    let len = reader.len();
    // The footer: `metadata, u32 metadata length, "PAR1"` (anything else is left to the library,
    // which reports it).
    if len >= 12
        && let Ok(tail) = reader.get_bytes(len - 8, 8)
        && &tail[4..] == b"PAR1"
    {
        let mlen = u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")) as u64;
        if mlen + 8 <= len {
            let meta = reader
                .get_bytes(len - 8 - mlen, mlen as usize)
                .map_err(|e| e.to_string())?;
            super::parquet_check::check_footer(&meta)
                .map_err(|e| format!("Parquet metadata: {e}"))?;
        }
    }
    let meta = ArrowReaderMetadata::load(&reader, ArrowReaderOptions::default())
        .map_err(|e| e.to_string())?;
    for (g, rg) in meta.metadata().row_groups().iter().enumerate() {
        for (c, col) in rg.columns().iter().enumerate() {
            let start = col
                .dictionary_page_offset()
                .unwrap_or(col.data_page_offset());
            let size = col.compressed_size();
            let inside = start >= 0
                && size >= 0
                && (start as u64)
                    .checked_add(size as u64)
                    .is_some_and(|end| end <= len);
            if !inside {
                return Err(format!(
                    "Parquet metadata: row group {g}, column {c}: its data (offset {start}, \
                     {size} bytes) does not lie inside the file ({len} bytes)"
                ));
            }
            let snappy = col.compression() == Compression::SNAPPY;
            super::parquet_check::check_column_chunk(size as u64, snappy, |at, n| {
                reader
                    .get_bytes(start as u64 + at, n)
                    .map(|b| b.to_vec())
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| format!("Parquet data: row group {g}, column {c}, {e}"))?;
        }
    }
    Ok(ParquetRecordBatchReaderBuilder::new_with_metadata(
        reader, meta,
    ))
}

/// Runs a Parquet reader, turning a panic inside the `parquet` library into an error:
/// `parquet` 60 asserts instead of returning an error on some malformed data pages (e.g. an
/// over-long run-length header, found by fuzzing), which no check of the metadata can rule out.
pub fn guarded<T>(read: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).unwrap_or_else(|p| {
        let what = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        Err(format!(
            "malformed Parquet data (the parquet library failed while decoding it: {what})"
        ))
    })
}

/// Reads and validates a Parquet panel. Problems carry 1-based row numbers.
pub fn read_panel_parquet<R: ChunkReader + 'static>(
    reader: R,
    taxonomy: Taxonomy,
    options: BuildOptions,
) -> Result<(Panel, BuildReport), Problems> {
    let mut problems = None;
    let result = guarded(|| {
        read_panel_parquet_unguarded(reader, taxonomy, options).map_err(|p| {
            problems = Some(p);
            String::new()
        })
    });
    match (result, problems) {
        (Ok(r), _) => Ok(r),
        (Err(_), Some(p)) => Err(p),
        (Err(e), None) => Err(Problems(vec![Problem::global(
            "file",
            e,
            "a readable Parquet file",
        )])),
    }
}

fn read_panel_parquet_unguarded<R: ChunkReader + 'static>(
    reader: R,
    taxonomy: Taxonomy,
    options: BuildOptions,
) -> Result<(Panel, BuildReport), Problems> {
    let builder = open_parquet(reader)
        .map_err(|e| Problems(vec![Problem::global("file", e, "a readable Parquet file")]))?;
    let not_parquet = |e: parquet::errors::ParquetError| {
        Problems(vec![Problem::global(
            "file",
            e.to_string(),
            "a readable Parquet file",
        )])
    };
    let names: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let map = ColumnMap::from_header(&names, Location::row(0))?;
    let batches = builder
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(not_parquet)?;
    let mut panel = PanelBuilder::new(taxonomy, options, &map);
    let mut row_no: u64 = 0;
    for batch in batches {
        let batch = batch.map_err(|e| {
            Problems(vec![Problem::global(
                "file",
                e.to_string(),
                "a readable Parquet file",
            )])
        })?;
        let mut text: Vec<StringArray> = Vec::with_capacity(names.len());
        for (i, col) in batch.columns().iter().enumerate() {
            match arrow_cast::cast(col, &DataType::Utf8) {
                Ok(a) => text.push(
                    a.as_any()
                        .downcast_ref::<StringArray>()
                        .expect("cast to Utf8")
                        .clone(),
                ),
                Err(_) => {
                    return Err(Problems(vec![Problem::global(
                        names[i].clone(),
                        format!("column type {}", col.data_type()),
                        "a string or number column",
                    )]));
                }
            }
        }
        let mut fields: Vec<Option<&str>> = vec![None; names.len()];
        // A null covariate is a missing value (as `NA` is in CSV); a null elsewhere is empty.
        let null_is_missing: Vec<bool> = (0..names.len())
            .map(|i| {
                Column::ALL
                    .into_iter()
                    .any(|c| c.is_covariate() && map.position(c) == Some(i))
            })
            .collect();
        for r in 0..batch.num_rows() {
            row_no += 1;
            for ((f, a), missing) in fields.iter_mut().zip(&text).zip(&null_is_missing) {
                *f = match (a.is_null(r), missing) {
                    (false, _) => Some(a.value(r)),
                    (true, true) => Some(crate::MISSING),
                    (true, false) => None,
                };
            }
            panel.push(&RawRow::from_fields(Location::row(row_no), &map, &fields));
        }
    }
    panel.finish()
}

/// Writes a panel as Parquet (Snappy-compressed, persons in order, records by year).
pub fn write_panel_parquet<W: Write + Send>(
    panel: &Panel,
    writer: W,
) -> parquet::errors::Result<()> {
    let cols = output_columns(panel);
    let schema = Arc::new(Schema::new(
        cols.iter()
            .map(|&c| Field::new(c.name(), data_type(c), !c.required()))
            .collect::<Vec<_>>(),
    ));
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_created_by(format!("labor-llm {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut w = ArrowWriter::try_new(writer, schema.clone(), Some(props))?;
    let rows = panel
        .persons
        .iter()
        .flat_map(|p| p.records.iter().map(move |r| (p, r)));
    let mut pending: Vec<_> = Vec::with_capacity(BATCH_ROWS);
    let flush = |pending: &mut Vec<_>, w: &mut ArrowWriter<W>| -> parquet::errors::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let arrays: Vec<ArrayRef> = cols
            .iter()
            .map(|&c| column_array(panel, pending, c))
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), arrays)?;
        w.write(&batch)?;
        pending.clear();
        Ok(())
    };
    for row in rows {
        pending.push(row);
        if pending.len() == BATCH_ROWS {
            flush(&mut pending, &mut w)?;
        }
    }
    flush(&mut pending, &mut w)?;
    w.close()?;
    Ok(())
}

fn column_array(
    panel: &Panel,
    rows: &[(&crate::panel::Person, &crate::panel::Record)],
    c: Column,
) -> ArrayRef {
    match c {
        Column::Year | Column::BirthYear => {
            let mut b = Int32Builder::with_capacity(rows.len());
            for (p, r) in rows {
                b.append_option(if c == Column::Year {
                    Some(r.year)
                } else {
                    p.birth_year
                });
            }
            Arc::new(b.finish())
        }
        Column::Weight => {
            let mut b = Float64Builder::with_capacity(rows.len());
            for (_, r) in rows {
                b.append_option(r.weight);
            }
            Arc::new(b.finish())
        }
        _ => {
            let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 8);
            for (p, r) in rows {
                b.append_option(cell(panel, p, r, c));
            }
            Arc::new(b.finish())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::guarded;

    #[test]
    fn a_panic_inside_a_guarded_reader_is_an_error_naming_it() {
        let e = guarded::<()>(|| panic!("run length too long")).unwrap_err();
        assert!(e.starts_with("malformed Parquet data"), "{e}");
        assert!(e.contains("run length too long"), "{e}");
        assert_eq!(guarded(|| Ok::<_, String>(3)), Ok(3));
        assert_eq!(
            guarded::<()>(|| Err("plain".into())),
            Err("plain".to_string())
        );
    }
}
