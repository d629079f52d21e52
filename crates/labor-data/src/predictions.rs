//! The predictions schema (SPEC §7.1): one row per model × evaluated person-year. Every model
//! writes it and every table or plot is computed from it.

use std::io::Write;
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int32Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::panel::Person;
use crate::split::Split;
use crate::taxonomy::Taxonomy;

#[derive(Debug, Clone, PartialEq)]
pub struct PredictionRow {
    pub model: String,
    pub dataset: String,
    pub person_id: String,
    pub split: Split,
    pub year: i32,
    /// 1-based index of the record in the person's history.
    pub t: i32,
    pub label: String,
    pub prev_label: Option<String>,
    /// Natural log of the model's probability of the true label (unnormalized for LMs).
    pub logp: f64,
    /// The same renormalized over the K valid labels.
    pub logp_norm: f64,
    /// Probability mass outside the valid labels (0 for normalized models).
    pub leak: f64,
    /// Normalized probability of `prev_label` (None at t = 1).
    pub p_stay: Option<f64>,
    /// Normalized probability of any occupation or `Unemployed`.
    pub p_in_lf: f64,
    /// The 5 most probable labels with their normalized probabilities.
    pub top: Vec<(String, f64)>,
    /// In-context language models: the number of training texts actually prepended (null for
    /// every other model). An extension of SPEC §7.1.
    pub icl_k: Option<i32>,
}

/// The Arrow schema of prediction files.
pub fn schema() -> Arc<Schema> {
    let s = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
    let i = |n: &str| Field::new(n, DataType::Int32, false);
    let f = |n: &str, null: bool| Field::new(n, DataType::Float64, null);
    Arc::new(Schema::new(vec![
        s("model", false),
        s("dataset", false),
        s("person_id", false),
        s("split", false),
        i("year"),
        i("t"),
        s("label", false),
        s("prev_label", true),
        f("logp", false),
        f("logp_norm", false),
        f("leak", false),
        f("p_stay", true),
        f("p_in_lf", false),
        s("top", false),
        Field::new("icl_k", DataType::Int32, true),
    ]))
}

/// The `top` column's JSON text: `[["code", p], ...]`.
pub fn top_json(top: &[(String, f64)]) -> String {
    serde_json::to_string(top).expect("serializable")
}

/// A model's prediction for some records of one person.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Per requested record, the natural-log probability of each of the K labels in taxonomy
    /// order. Normalized models sum to 1; language models may sum to less (the rest leaked to
    /// strings that are not labels).
    pub logp: Vec<Vec<f64>>,
    /// For in-context language models, the number of training texts prepended.
    pub icl_k: Option<i32>,
}

/// Every model — language model, comparison model or oracle — implements this, and evaluation
/// only ever sees its output.
pub trait Predictor {
    /// The model's name in prediction files (`markov1`, `lm-ft`, …).
    fn name(&self) -> &str;
    /// Distributions for the records `ts` (0-based indices into `person.records`) of `person`.
    fn predict(&mut self, person: &Person, ts: &[usize]) -> Result<Prediction, String>;
}

/// One predictions row from a record's label log-probabilities (K values in taxonomy order):
/// normalizes them, and derives leaked mass, P(stay), P(in labor force) and the top 5. Also
/// returns the normalized distribution.
pub fn row_from_logp(
    model: &str,
    person: &Person,
    split: Split,
    taxonomy: &Taxonomy,
    t: usize,
    logp: &[f64],
    icl_k: Option<i32>,
) -> (PredictionRow, Vec<f64>) {
    assert_eq!(logp.len(), taxonomy.len(), "one log-probability per label");
    let labels = taxonomy.labels();
    let r = &person.records[t];
    let max = logp.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + logp.iter().map(|&x| (x - max).exp()).sum::<f64>().ln();
    let p: Vec<f64> = logp.iter().map(|&x| (x - lse).exp()).collect();
    let truth = r.label.index();
    let prev = (t > 0).then(|| person.records[t - 1].label.index());
    let p_in_lf = labels
        .iter()
        .zip(&p)
        .filter(|(l, _)| l.kind.in_labor_force())
        .map(|(_, q)| q)
        .sum();
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
    let top = order
        .iter()
        .take(5)
        .map(|&i| (labels[i].code.clone(), p[i]))
        .collect();
    let row = PredictionRow {
        model: model.to_string(),
        dataset: person.dataset.clone(),
        person_id: person.person_id.clone(),
        split,
        year: r.year,
        t: t as i32 + 1,
        label: labels[truth].code.clone(),
        prev_label: prev.map(|i| labels[i].code.clone()),
        logp: logp[truth],
        logp_norm: logp[truth] - lse,
        leak: (1.0 - lse.exp()).max(0.0),
        p_stay: prev.map(|i| p[i]),
        p_in_lf,
        top,
        icl_k,
    };
    (row, p)
}

/// Streams prediction rows into a Parquet file, in batches.
pub struct PredictionWriter<W: Write + Send> {
    writer: ArrowWriter<W>,
    pending: Vec<PredictionRow>,
    rows: u64,
}

const BATCH: usize = 65_536;

impl<W: Write + Send> PredictionWriter<W> {
    pub fn new(w: W) -> parquet::errors::Result<Self> {
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        Ok(Self {
            writer: ArrowWriter::try_new(w, schema(), Some(props))?,
            pending: Vec::with_capacity(BATCH),
            rows: 0,
        })
    }

    /// Records `key = value` in the file's key-value metadata (e.g. the model's configuration),
    /// which `labor eval` copies into its report.
    pub fn add_metadata(&mut self, key: &str, value: &str) {
        self.writer
            .append_key_value_metadata(parquet::file::metadata::KeyValue::new(
                key.to_string(),
                value.to_string(),
            ));
    }

    pub fn push(&mut self, row: PredictionRow) -> parquet::errors::Result<()> {
        self.pending.push(row);
        if self.pending.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> parquet::errors::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let n = self.pending.len();
        let mut strs: Vec<StringBuilder> = (0..7)
            .map(|_| StringBuilder::with_capacity(n, n * 8))
            .collect();
        let (mut year, mut t, mut icl) = (
            Int32Builder::with_capacity(n),
            Int32Builder::with_capacity(n),
            Int32Builder::with_capacity(n),
        );
        let mut fl: Vec<Float64Builder> =
            (0..5).map(|_| Float64Builder::with_capacity(n)).collect();
        for r in &self.pending {
            strs[0].append_value(&r.model);
            strs[1].append_value(&r.dataset);
            strs[2].append_value(&r.person_id);
            strs[3].append_value(r.split.as_str());
            strs[4].append_value(&r.label);
            strs[5].append_option(r.prev_label.as_deref());
            strs[6].append_value(top_json(&r.top));
            year.append_value(r.year);
            t.append_value(r.t);
            icl.append_option(r.icl_k);
            fl[0].append_value(r.logp);
            fl[1].append_value(r.logp_norm);
            fl[2].append_value(r.leak);
            fl[3].append_option(r.p_stay);
            fl[4].append_value(r.p_in_lf);
        }
        let mut s: Vec<ArrayRef> = strs
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        let mut f: Vec<ArrayRef> = fl
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        let top = s.pop().expect("top");
        let cols: Vec<ArrayRef> = vec![
            s[0].clone(),
            s[1].clone(),
            s[2].clone(),
            s[3].clone(),
            Arc::new(year.finish()),
            Arc::new(t.finish()),
            s[4].clone(),
            s[5].clone(),
            f.remove(0),
            f.remove(0),
            f.remove(0),
            f.remove(0),
            f.remove(0),
            top,
            Arc::new(icl.finish()),
        ];
        self.writer.write(&RecordBatch::try_new(schema(), cols)?)?;
        self.rows += n as u64;
        self.pending.clear();
        Ok(())
    }

    /// Writes what is pending and closes the file; returns the number of rows written.
    pub fn finish(mut self) -> parquet::errors::Result<u64> {
        self.flush()?;
        self.writer.close()?;
        Ok(self.rows)
    }
}

/// Writes full distributions: one row per (model, dataset, person_id, t) and one float64 column
/// per label, named by its code, in taxonomy order.
pub fn write_full_distributions<'a, W: Write + Send>(
    w: W,
    codes: &[String],
    rows: impl Iterator<Item = (&'a str, &'a str, &'a str, i32, &'a [f64])>,
) -> parquet::errors::Result<u64> {
    let mut fields = vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("dataset", DataType::Utf8, false),
        Field::new("person_id", DataType::Utf8, false),
        Field::new("t", DataType::Int32, false),
    ];
    fields.extend(
        codes
            .iter()
            .map(|c| Field::new(c, DataType::Float64, false)),
    );
    let schema = Arc::new(Schema::new(fields));
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer = ArrowWriter::try_new(w, schema.clone(), Some(props))?;
    let mut n = 0u64;
    let mut rows = rows.peekable();
    while rows.peek().is_some() {
        let chunk: Vec<_> = rows.by_ref().take(4096).collect();
        let mut s: Vec<StringBuilder> = (0..3).map(|_| StringBuilder::new()).collect();
        let mut t = Int32Builder::new();
        let mut probs: Vec<Float64Builder> = codes
            .iter()
            .map(|_| Float64Builder::with_capacity(chunk.len()))
            .collect();
        for (model, dataset, person, tt, p) in &chunk {
            s[0].append_value(model);
            s[1].append_value(dataset);
            s[2].append_value(person);
            t.append_value(*tt);
            for (b, x) in probs.iter_mut().zip(p.iter()) {
                b.append_value(*x);
            }
        }
        let mut cols: Vec<ArrayRef> = s
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        cols.push(Arc::new(t.finish()));
        cols.extend(probs.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        writer.write(&RecordBatch::try_new(schema.clone(), cols)?)?;
        n += chunk.len() as u64;
    }
    writer.close()?;
    Ok(n)
}

/// Reads `(dataset, person_id, t, logp)` of every row of a predictions file.
pub fn read_logp<R: parquet::file::reader::ChunkReader + 'static>(
    reader: R,
) -> Result<Vec<(String, String, i32, f64)>, String> {
    crate::formats::parquet::guarded(|| read_logp_unguarded(reader))
}

fn read_logp_unguarded<R: parquet::file::reader::ChunkReader + 'static>(
    reader: R,
) -> Result<Vec<(String, String, i32, f64)>, String> {
    use arrow_array::{Float64Array, Int32Array, StringArray};
    let b = crate::formats::parquet::open_parquet(reader)?;
    let mut out = Vec::new();
    for batch in b.build().map_err(|e| e.to_string())? {
        let batch = batch.map_err(|e| e.to_string())?;
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| format!("no column `{name}` in the predictions file"))
        };
        let ds = col("dataset")?
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or("`dataset` is not a string column")?
            .clone();
        let pid = col("person_id")?
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or("`person_id` is not a string column")?
            .clone();
        let t = col("t")?
            .as_any()
            .downcast_ref::<Int32Array>()
            .ok_or("`t` is not an int32 column")?
            .clone();
        let lp = col("logp")?
            .as_any()
            .downcast_ref::<Float64Array>()
            .ok_or("`logp` is not a float64 column")?
            .clone();
        for i in 0..batch.num_rows() {
            out.push((
                ds.value(i).to_string(),
                pid.value(i).to_string(),
                t.value(i),
                lp.value(i),
            ));
        }
    }
    Ok(out)
}

/// A predictions file read back: every row and the file's key-value metadata.
#[derive(Debug, Clone, Default)]
pub struct PredictionsFile {
    pub rows: Vec<PredictionRow>,
    pub metadata: Vec<(String, String)>,
}

fn column<'b, T: 'static>(batch: &'b RecordBatch, name: &str, what: &str) -> Result<&'b T, String> {
    batch
        .column_by_name(name)
        .ok_or_else(|| format!("no column `{name}` (every predictions file has it, SPEC §7.1)"))?
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| format!("column `{name}` is not {what}"))
}

/// Reads every row of a predictions file (SPEC §7.1). Problems name the row (1-based) and
/// column. The `icl_k` column is optional (files written before it existed lack it).
pub fn read_predictions<R: parquet::file::reader::ChunkReader + 'static>(
    reader: R,
) -> Result<PredictionsFile, String> {
    crate::formats::parquet::guarded(|| read_predictions_unguarded(reader))
}

fn read_predictions_unguarded<R: parquet::file::reader::ChunkReader + 'static>(
    reader: R,
) -> Result<PredictionsFile, String> {
    use arrow_array::{Array, Float64Array, Int32Array, StringArray};
    let b = crate::formats::parquet::open_parquet(reader)?;
    let metadata = b
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .filter(|k| k.key != "ARROW:schema")
                .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let mut rows = Vec::new();
    for batch in b.build().map_err(|e| e.to_string())? {
        let batch = batch.map_err(|e| e.to_string())?;
        let s = |n: &str| column::<StringArray>(&batch, n, "a string column");
        let i = |n: &str| column::<Int32Array>(&batch, n, "an int32 column");
        let f = |n: &str| column::<Float64Array>(&batch, n, "a float64 column");
        let (model, dataset, person, split) =
            (s("model")?, s("dataset")?, s("person_id")?, s("split")?);
        let (year, t, label, prev) = (i("year")?, i("t")?, s("label")?, s("prev_label")?);
        let (logp, logp_norm, leak) = (f("logp")?, f("logp_norm")?, f("leak")?);
        let (p_stay, p_in_lf, top) = (f("p_stay")?, f("p_in_lf")?, s("top")?);
        let icl = match batch.column_by_name("icl_k") {
            Some(_) => Some(i("icl_k")?),
            None => None,
        };
        for r in 0..batch.num_rows() {
            let at = rows.len() + 1;
            let split_v: Split = split.value(r).parse().map_err(|_| {
                format!(
                    "row {at}, column `split`: {:?} is not train, valid or test",
                    split.value(r)
                )
            })?;
            let top_v: Vec<(String, f64)> = serde_json::from_str(top.value(r)).map_err(|e| {
                format!("row {at}, column `top`: not a JSON list of [label, p]: {e}")
            })?;
            let opt_f = |a: &Float64Array| (!a.is_null(r)).then(|| a.value(r));
            rows.push(PredictionRow {
                model: model.value(r).to_string(),
                dataset: dataset.value(r).to_string(),
                person_id: person.value(r).to_string(),
                split: split_v,
                year: year.value(r),
                t: t.value(r),
                label: label.value(r).to_string(),
                prev_label: (!prev.is_null(r)).then(|| prev.value(r).to_string()),
                logp: logp.value(r),
                logp_norm: logp_norm.value(r),
                leak: leak.value(r),
                p_stay: opt_f(p_stay),
                p_in_lf: p_in_lf.value(r),
                top: top_v,
                icl_k: icl.and_then(|a| (!a.is_null(r)).then(|| a.value(r))),
            });
        }
    }
    Ok(PredictionsFile { rows, metadata })
}

/// One row of a full-distributions file, with the label probabilities summed into classes.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassProbs {
    pub model: String,
    pub dataset: String,
    pub person_id: String,
    pub t: i32,
    pub probs: Vec<f64>,
}

/// Reads a full-distributions file (one column per label code) and sums each row's
/// probabilities into `n_classes` classes: `class_of(code)` gives a label's class, `None` for a
/// column that is not a label. Labels missing from the file are an error when `expected` lists
/// them, so a file written for another label set is never silently mis-read.
pub fn read_full_by_class<R: parquet::file::reader::ChunkReader + 'static>(
    reader: R,
    expected: &[String],
    n_classes: usize,
    class_of: impl Fn(&str) -> Option<usize>,
) -> Result<Vec<ClassProbs>, String> {
    crate::formats::parquet::guarded(|| {
        read_full_by_class_unguarded(reader, expected, n_classes, class_of)
    })
}

fn read_full_by_class_unguarded<R: parquet::file::reader::ChunkReader + 'static>(
    reader: R,
    expected: &[String],
    n_classes: usize,
    class_of: impl Fn(&str) -> Option<usize>,
) -> Result<Vec<ClassProbs>, String> {
    use arrow_array::{Float64Array, Int32Array, StringArray};
    let b = crate::formats::parquet::open_parquet(reader)?;
    let schema = b.schema().clone();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let missing: Vec<&String> = expected
        .iter()
        .filter(|c| !names.contains(&c.as_str()))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} label column(s) missing from the full-distributions file, e.g. {:?}: it was \
             written for another label set",
            missing.len(),
            &missing[..missing.len().min(5)]
        ));
    }
    let classes: Vec<(usize, usize)> = names
        .iter()
        .enumerate()
        .filter(|(_, n)| !["model", "dataset", "person_id", "t"].contains(n))
        .filter_map(|(i, n)| class_of(n).map(|c| (i, c)))
        .collect();
    let mut out = Vec::new();
    for batch in b.build().map_err(|e| e.to_string())? {
        let batch = batch.map_err(|e| e.to_string())?;
        let s = |n: &str| column::<StringArray>(&batch, n, "a string column");
        let (model, dataset, person) = (s("model")?, s("dataset")?, s("person_id")?);
        let t = column::<Int32Array>(&batch, "t", "an int32 column")?;
        let cols: Vec<(&Float64Array, usize)> = classes
            .iter()
            .map(|&(i, c)| {
                batch
                    .column(i)
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .map(|a| (a, c))
                    .ok_or_else(|| format!("column `{}` is not float64", names[i]))
            })
            .collect::<Result<_, _>>()?;
        for r in 0..batch.num_rows() {
            let mut probs = vec![0.0; n_classes];
            for (a, c) in &cols {
                probs[*c] += a.value(r);
            }
            out.push(ClassProbs {
                model: model.value(r).to_string(),
                dataset: dataset.value(r).to_string(),
                person_id: person.value(r).to_string(),
                t: t.value(r),
                probs,
            });
        }
    }
    Ok(out)
}
