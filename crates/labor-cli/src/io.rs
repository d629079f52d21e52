//! Everything that touches the file system: reading and writing panels, taxonomies, mappings.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use labor_data::formats::career::{CareerFiles, is_career_file, read_career, write_career};
use labor_data::formats::csv::{read_panel_csv, write_panel_csv};
use labor_data::formats::parquet::{read_panel_parquet, write_panel_parquet};
use labor_data::{BuildOptions, BuildReport, Panel, Problem, Problems, SplitSpec, Taxonomy};

/// A failure of a command: invalid input (exit 2) or anything else (exit 1).
#[derive(Debug)]
pub enum Failure {
    Invalid {
        file: String,
        problems: Vec<Problem>,
    },
    Other(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Other(e.into())
    }
}

pub type CmdResult<T = ()> = Result<T, Failure>;

impl Failure {
    /// As an `anyhow` error that still exits 2 when the failure was invalid input.
    pub fn into_anyhow(self) -> anyhow::Error {
        match self {
            Failure::Other(e) => e,
            Failure::Invalid { file, problems } => {
                let first = problems.first().map(|p| p.to_string()).unwrap_or_default();
                anyhow::anyhow!(InvalidInput(format!(
                    "{file}: {} problem(s); the first: {first}",
                    problems.len()
                )))
            }
        }
    }
}

/// A problem with what the user gave (a model directory, a config file) found deep inside a
/// command that otherwise returns `anyhow` errors: wrapped in the error chain, it makes the
/// command exit with status 2 like any other invalid input.
#[derive(Debug)]
pub struct InvalidInput(pub String);

impl std::fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidInput {}

/// `anyhow!` for invalid input (exit 2): `bad!("x = {x}: expected ...")`.
#[macro_export]
macro_rules! bad {
    ($($t:tt)*) => {
        anyhow::anyhow!($crate::io::InvalidInput(format!($($t)*)))
    };
}

/// Whether an error chain contains an [`InvalidInput`].
pub fn is_invalid_input(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<InvalidInput>())
}

pub fn invalid(file: &Path, problems: Problems) -> Failure {
    Failure::Invalid {
        file: file.display().to_string(),
        problems: problems.0,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// CSV with a header naming the panel columns.
    Csv,
    /// Parquet with the panel columns.
    Parquet,
    /// A directory of CAREER parallel files ({train,valid,test}.{job,year,...}).
    Career,
}

impl Format {
    /// The format of `path`: `--from/--to` when given, else a directory is CAREER and the
    /// extension decides (`.csv`, `.parquet`/`.pq`).
    pub fn of(path: &Path, given: Option<Format>) -> anyhow::Result<Format> {
        if let Some(f) = given {
            return Ok(f);
        }
        if path.is_dir() {
            return Ok(Format::Career);
        }
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref()
        {
            Some("csv") => Ok(Format::Csv),
            Some("parquet") | Some("pq") => Ok(Format::Parquet),
            _ => bail!(
                "cannot tell the format of {}: name it .csv or .parquet, or pass the format (csv, parquet, career)",
                path.display()
            ),
        }
    }
}

/// Options shared by every command that reads a panel.
#[derive(Debug, Clone, Args)]
pub struct PanelInput {
    /// Label taxonomy (CSV `code,title,group`); default: the embedded default taxonomy.
    #[arg(long, value_name = "CSV")]
    pub taxonomy: Option<PathBuf>,
    /// Give label codes the taxonomy does not know a label of their own (title = code, group
    /// "Unknown") instead of reporting them as errors. Added codes are listed.
    #[arg(long)]
    pub add_unknown_labels: bool,
    /// Input format, when the file name does not tell.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub from: Option<Format>,
    /// Dataset name for CAREER input (which carries none).
    #[arg(long, default_value = "career")]
    pub dataset: String,
}

pub fn load_taxonomy(path: Option<&Path>) -> CmdResult<Taxonomy> {
    match path {
        None => Ok(Taxonomy::embedded_default()),
        Some(p) => {
            let f =
                File::open(p).with_context(|| format!("cannot open taxonomy {}", p.display()))?;
            Taxonomy::from_csv(BufReader::new(f)).map_err(|e| invalid(p, e))
        }
    }
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})")
            .expect("template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Reads the CAREER files of a directory (other files, e.g. README, are ignored).
pub fn read_career_dir(dir: &Path) -> anyhow::Result<CareerFiles> {
    let mut files = CareerFiles::new();
    for e in std::fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?
    {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if is_career_file(&name) {
            let text = std::fs::read_to_string(e.path())
                .with_context(|| format!("cannot read {} as UTF-8 text", e.path().display()))?;
            files.insert(name, text);
        }
    }
    Ok(files)
}

/// Reads and validates a panel.
pub fn load_panel(path: &Path, input: &PanelInput) -> CmdResult<(Panel, BuildReport)> {
    let taxonomy = load_taxonomy(input.taxonomy.as_deref())?;
    let options = BuildOptions {
        add_unknown_labels: input.add_unknown_labels,
    };
    let format = Format::of(path, input.from)?;
    let result = match format {
        Format::Career => {
            let files = read_career_dir(path)?;
            read_career(&files, &input.dataset, taxonomy, options).map_err(|Problems(ps)| {
                // Career problems name a file inside the directory.
                Problems(
                    ps.into_iter()
                        .map(|mut p| {
                            if let Some(l) = &mut p.location
                                && let Some(f) = &l.file
                            {
                                l.file = Some(path.join(f).display().to_string());
                            }
                            p
                        })
                        .collect(),
                )
            })
        }
        Format::Csv => {
            let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            let len = f.metadata()?.len();
            let pb = progress(len, "reading");
            let r = read_panel_csv(
                BufReader::with_capacity(1 << 20, pb.wrap_read(f)),
                taxonomy,
                options,
            );
            pb.finish_and_clear();
            r
        }
        Format::Parquet => {
            let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            read_panel_parquet(f, taxonomy, options)
        }
    };
    result.map_err(|e| invalid(path, e))
}

/// Writes `problems` (of input `file` where a problem names none) as CSV: file, unit (`line`,
/// `row` or empty for the whole input), index, field, found, expected.
pub fn write_problems_csv(path: &Path, file: &str, problems: &[Problem]) -> anyhow::Result<()> {
    write_atomic(path, |w| {
        let mut c = csv::Writer::from_writer(w);
        c.write_record(["file", "unit", "index", "field", "found", "expected"])?;
        for p in problems {
            let (f, unit, index) = match &p.location {
                Some(l) => (
                    l.file.as_deref().unwrap_or(file),
                    match l.unit {
                        labor_data::problem::Unit::Line => "line",
                        labor_data::problem::Unit::Row => "row",
                    },
                    l.index.to_string(),
                ),
                None => (file, "", String::new()),
            };
            c.write_record([f, unit, &index, &p.field, &p.found, &p.expected])?;
        }
        c.flush()?;
        Ok(())
    })
}

/// An exclusive lock on a directory, held until dropped: `DIR/.lock`, locked with the
/// operating system's advisory file lock, holding the process id for the message. The kernel
/// releases the lock when the process ends, however it ends, so a lock file left behind never
/// blocks a later run.
pub struct DirLock {
    _file: File,
}

/// Takes [`DirLock`] on `dir` (created if missing) for `what` (e.g. "`labor train`"), or
/// fails at once naming the process that holds it.
pub fn lock_dir(dir: &Path, what: &str) -> anyhow::Result<DirLock> {
    use std::io::{Read, Seek};
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(".lock");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            let holder = holder.trim();
            bail!(
                "{}: another {what} is running in this directory (process {}, holding {}); \
                 wait for it to finish or stop it first",
                dir.display(),
                if holder.is_empty() { "unknown" } else { holder },
                path.display()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    f.set_len(0)?;
    f.seek(std::io::SeekFrom::Start(0))?;
    writeln!(f, "{}", std::process::id())?;
    f.flush()?;
    Ok(DirLock { _file: f })
}

/// Writes `path` through a temporary file renamed into place, so a failed write leaves no
/// half-written file.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path
        .file_name()
        .context("output path has no file name")?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result: anyhow::Result<()> = (|| {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        write(&mut w)?;
        w.flush()?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// Writes a panel in `format`. CAREER output goes to a directory; persons without a split take
/// the one `spec` assigns.
pub fn save_panel(
    panel: &Panel,
    path: &Path,
    format: Format,
    spec: &SplitSpec,
) -> anyhow::Result<()> {
    match format {
        Format::Csv => write_atomic(path, |w| Ok(write_panel_csv(panel, w)?)),
        Format::Parquet => write_atomic(path, |w| Ok(write_panel_parquet(panel, w)?)),
        Format::Career => {
            std::fs::create_dir_all(path)
                .with_context(|| format!("cannot create directory {}", path.display()))?;
            for (name, content) in write_career(panel, spec) {
                write_atomic(&path.join(name), |w| Ok(w.write_all(content.as_bytes())?))?;
            }
            Ok(())
        }
    }
}

/// Format for an output path, which for CAREER need not exist yet.
pub fn output_format(path: &Path, given: Option<Format>) -> anyhow::Result<Format> {
    match given {
        Some(f) => Ok(f),
        None if path.extension().is_none() && !path.is_file() => Ok(Format::Career),
        None => Format::of(path, None),
    }
}

/// Refuses (exit 2) a training corpus whose persons in the splits `used` include validation or
/// test persons of an evaluated panel; with `allow`, only warns. Returns the number of
/// overlapping persons.
pub fn check_overlap(
    corpus: &str,
    panel: &Panel,
    spec: &SplitSpec,
    used: &[labor_data::Split],
    held: &labor_data::overlap::HeldOut,
    allow: bool,
) -> anyhow::Result<usize> {
    let found = held.find(panel, spec, used);
    if found.is_empty() {
        return Ok(0);
    }
    let msg = labor_data::overlap::describe(corpus, &found);
    if allow {
        eprintln!("warning: {msg} (allowed by --allow-overlap)");
        Ok(found.len())
    } else {
        Err(crate::bad!(
            "{msg}; a model trained on them would be scored on persons it has seen. Remove them \
             from the corpus, or pass --allow-overlap (preset or run key allow_overlap = true) \
             if that is what you mean"
        ))
    }
}
