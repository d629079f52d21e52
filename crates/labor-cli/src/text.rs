//! `labor text ...` and `labor tokenizer ...`

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use labor_data::{Panel, Split, SplitSpec};
use labor_text::tokenize::{
    Misalignment, PreTokenize, add_label_tokens, check_alignment, continuation_lengths, from_json,
    to_json, train_bpe,
};
use labor_text::{Renderer, Switches, Template};
use tokenizers::Tokenizer;

use crate::io::{CmdResult, PanelInput, load_panel, write_atomic};

#[derive(Debug, Clone, Args)]
pub struct TextArgs {
    /// Template: `labor-v1` or a template file (TOML; its keys replace parts of labor-v1).
    #[arg(long, default_value = "labor-v1")]
    pub template: String,
    /// Leave out the `<A worker from the ... dataset>` line.
    #[arg(long)]
    pub no_dataset_line: bool,
    /// Leave out the birth-year line.
    #[arg(long)]
    pub no_birth_year: bool,
    /// Leave education out of the record lines.
    #[arg(long)]
    pub no_education: bool,
    /// Leave out the demographics sentence.
    #[arg(long)]
    pub no_demographics: bool,
    /// Write unique numeric codes instead of titles.
    #[arg(long)]
    pub numeric_codes: bool,
    /// Write each label's own token before its title (`YEAR (EDU):<|label:CODE|> Title`), as
    /// models trained with `model.label_tokens` on a pre-trained base read them. `labor score`
    /// turns this on by itself when the model's tokenizer has the label tokens.
    #[arg(long)]
    pub label_tokens: bool,
}

impl TextArgs {
    pub fn switches(&self) -> Switches {
        Switches {
            dataset_line: !self.no_dataset_line,
            birth_year: !self.no_birth_year,
            education: !self.no_education,
            demographics: !self.no_demographics,
            numeric_codes: self.numeric_codes,
            label_tokens: self.label_tokens,
        }
    }
    pub fn template(&self) -> anyhow::Result<Template> {
        if let Some(t) = Template::builtin(&self.template) {
            return Ok(t);
        }
        let path = Path::new(&self.template);
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "no built-in template {:?} and cannot read it as a file",
                self.template
            )
        })?;
        Template::from_toml(&text)
            .map_err(|e| anyhow!(crate::io::InvalidInput(format!("{}: {e}", path.display()))))
    }
}

#[derive(Debug, Subcommand)]
pub enum TextCommand {
    /// Render each person's history as text (JSON lines: dataset, person_id, split, template,
    /// text, and per record the context end and continuation span, in UTF-8 byte offsets).
    Render {
        #[arg(long)]
        panel: PathBuf,
        #[command(flatten)]
        input: PanelInput,
        #[command(flatten)]
        text: TextArgs,
        /// Only persons of this split (train, valid, test).
        #[arg(long)]
        split: Option<String>,
        /// Split seed for persons without an explicit split.
        #[arg(long, default_value_t = labor_data::split::DEFAULT_SPLIT_SEED)]
        seed: u64,
        /// Also tokenize each text with this tokenizer.json and write its token ids.
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenizerCommand {
    /// Train a byte-level BPE tokenizer on the training-split texts of a panel, save it as
    /// tokenizer.json and check label alignment (exit 2 if some label is misaligned).
    Train {
        #[arg(long)]
        panel: PathBuf,
        #[command(flatten)]
        input: PanelInput,
        #[command(flatten)]
        text: TextArgs,
        #[arg(long, default_value_t = 4096)]
        vocab_size: usize,
        /// How the text is cut before BPE merges: `byte-level` (GPT-2 style: words, numbers and
        /// punctuation apart) or `segments` (pieces end after each `:` and newline, so whole job
        /// titles can become single tokens).
        #[arg(long, default_value_t = PreTokenize::ByteLevel)]
        pre_tokenize: PreTokenize,
        /// Do not add one token per label continuation (titles and numeric codes): titles are
        /// then learned as BPE pieces like the rest of the text.
        #[arg(long)]
        no_label_tokens: bool,
        #[arg(long, default_value_t = labor_data::split::DEFAULT_SPLIT_SEED)]
        seed: u64,
        /// Panels the models using this tokenizer will be evaluated on: no training text may be
        /// one of their (or --panel's) validation or test persons (exit 2 naming them).
        #[arg(long, value_name = "PANEL", num_args = 1..)]
        held_out: Vec<PathBuf>,
        /// Train even when --panel holds held-out persons (a warning instead of exit 2).
        #[arg(long)]
        allow_overlap: bool,
        #[arg(long)]
        out: PathBuf,
    },
    /// Build a tokenizer from a GGUF model file's metadata (tokenizer.ggml.*) and save it as
    /// tokenizer.json; with --panel, also run the alignment check.
    FromGguf {
        /// The GGUF file.
        gguf: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Split text before BPE as NAME (gpt2 or smollm) instead of what the file's
        /// `tokenizer.ggml.pre` says (needed when it is absent or unsupported and you know).
        #[arg(long, value_name = "NAME")]
        pre_tokenizer: Option<String>,
        /// Check label alignment on this panel's texts.
        #[arg(long)]
        panel: Option<PathBuf>,
        #[command(flatten)]
        input: PanelInput,
        #[command(flatten)]
        text: TextArgs,
    },
    /// Check that every label's continuation aligns with token boundaries after the record
    /// contexts of a panel's texts; reports each misaligned label and its tokens (exit 2).
    Check {
        #[arg(long)]
        tokenizer: PathBuf,
        #[arg(long)]
        panel: PathBuf,
        #[command(flatten)]
        input: PanelInput,
        #[command(flatten)]
        text: TextArgs,
    },
}

fn load_tokenizer(path: &Path) -> anyhow::Result<Tokenizer> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    from_json(&bytes).map_err(|e| anyhow!("{}: not a tokenizer.json: {e}", path.display()))
}

/// Record contexts for the alignment check: the contexts of the first three records of each of
/// the panel's first five persons (headers and record prefixes as the template writes them).
fn contexts(panel: &Panel, r: &Renderer) -> Vec<String> {
    panel
        .persons
        .iter()
        .take(5)
        .flat_map(|p| {
            let out = r.render(p, &panel.taxonomy);
            out.records
                .iter()
                .take(3)
                .map(|s| out.text[..s.context_end].to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

pub fn panel_and_template(
    panel: &Path,
    input: &PanelInput,
    text: &TextArgs,
) -> CmdResult<(Panel, Template)> {
    let (p, _) = load_panel(panel, input)?;
    Ok((p, text.template()?))
}

/// Runs the alignment check of `tok` on the panel's contexts and reports it, with the cost of
/// the label continuations: tokens per continuation and the nodes of the label trie.
pub fn align(tok: &Tokenizer, p: &Panel, r: &Renderer) -> CmdResult {
    let conts = r.continuations();
    let bad = check_alignment(tok, &contexts(p, r), &conts).map_err(|e| anyhow!("{e}"))?;
    let (max, mean) = continuation_lengths(tok, &conts).map_err(|e| anyhow!("{e}"))?;
    let ids: Vec<Vec<u32>> = conts
        .iter()
        .map(|c| {
            tok.encode(c.as_str(), false)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| anyhow!("{e}"))
        })
        .collect::<anyhow::Result<_>>()?;
    let trie = labor_lm::score::LabelTrie::new(&ids).map_err(|e| anyhow!("label trie: {e}"))?;
    println!(
        "label continuations: {} labels, {mean:.2} tokens on average, at most {max}; \
         label trie: {} inner nodes (query tokens per record after the context)",
        conts.len(),
        trie.n_nodes(),
    );
    report_alignment(&bad, p)
}

fn report_alignment(bad: &[Misalignment], panel: &Panel) -> CmdResult {
    if bad.is_empty() {
        println!(
            "alignment: every one of the {} labels aligns after every context checked",
            panel.taxonomy.len()
        );
        return Ok(());
    }
    let mut labels: Vec<usize> = bad.iter().map(|m| m.label).collect();
    labels.sort();
    labels.dedup();
    for m in bad {
        eprintln!(
            "misaligned: {} [{}]",
            m,
            panel.taxonomy.labels()[m.label].code
        );
    }
    Err(anyhow!(
        "{} label(s) do not align with this tokenizer ({} cases)",
        labels.len(),
        bad.len()
    )
    .into())
}

pub fn run_text(cmd: &TextCommand) -> CmdResult {
    let TextCommand::Render {
        panel,
        input,
        text,
        split,
        seed,
        tokenizer,
        out,
    } = cmd;
    let (p, template) = panel_and_template(panel, input, text)?;
    let r = Renderer::new(&template, text.switches(), &p.taxonomy).map_err(|e| anyhow!(e))?;
    let spec = SplitSpec {
        seed: *seed,
        ..SplitSpec::default()
    };
    let only: Option<Split> = match split {
        Some(s) => Some(
            s.parse()
                .map_err(|_| anyhow!("--split {s:?}: expected train, valid or test"))?,
        ),
        None => None,
    };
    let tok = tokenizer.as_deref().map(load_tokenizer).transpose()?;
    let pb = ProgressBar::new(p.persons.len() as u64);
    pb.set_style(
        ProgressStyle::with_template("rendering {pos}/{len} [{bar:30}] ({eta})")
            .expect("template")
            .progress_chars("=> "),
    );
    let mut n = 0usize;
    let mut tokens = 0usize;
    write_atomic(out, |w| {
        for person in &p.persons {
            pb.inc(1);
            let s = person.split_or(&spec);
            if only.is_some_and(|o| o != s) {
                continue;
            }
            let rendered = r.render(person, &p.taxonomy);
            let mut obj = serde_json::json!({
                "dataset": person.dataset,
                "person_id": person.person_id,
                "split": s.as_str(),
                "template": format!("{}@{}", template.name, template.version),
                "text": rendered.text,
                "spans": rendered.records,
            });
            if let Some(t) = &tok {
                let ids = t
                    .encode(rendered.text.as_str(), false)
                    .map_err(|e| anyhow!("tokenizing: {e}"))?
                    .get_ids()
                    .to_vec();
                tokens += ids.len();
                obj["ids"] = serde_json::json!(ids);
            }
            serde_json::to_writer(&mut *w, &obj)?;
            w.write_all(b"\n")?;
            n += 1;
        }
        Ok(())
    })?;
    pb.finish_and_clear();
    print!("wrote {}: {n} texts", out.display());
    if tok.is_some() {
        print!(", {tokens} tokens");
    }
    println!();
    Ok(())
}

pub fn run_tokenizer(cmd: &TokenizerCommand) -> CmdResult {
    match cmd {
        TokenizerCommand::Train {
            panel,
            input,
            text,
            vocab_size,
            pre_tokenize,
            no_label_tokens,
            seed,
            held_out,
            allow_overlap,
            out,
        } => {
            if text.label_tokens {
                return Err(anyhow!(
                    "--label-tokens is for the tokenizer of a pre-trained base (`labor train` with \
                     model.label_tokens adds them); a trained tokenizer has one token per label \
                     continuation unless --no-label-tokens"
                )
                .into());
            }
            let (p, template) = panel_and_template(panel, input, text)?;
            let r =
                Renderer::new(&template, text.switches(), &p.taxonomy).map_err(|e| anyhow!(e))?;
            let spec = SplitSpec {
                seed: *seed,
                ..SplitSpec::default()
            };
            let mut held = labor_data::overlap::HeldOut::new();
            held.add(&p, &spec);
            for h in held_out {
                held.add(&crate::io::load_panel(h, input)?.0, &spec);
            }
            crate::io::check_overlap(
                &panel.display().to_string(),
                &p,
                &spec,
                &[Split::Train],
                &held,
                *allow_overlap,
            )?;
            let texts: Vec<String> = p
                .persons
                .iter()
                .filter(|x| x.split_or(&spec) == Split::Train)
                .map(|x| {
                    let t = r.render(x, &p.taxonomy);
                    if *no_label_tokens {
                        t.text
                    } else {
                        t.without_continuations()
                    }
                })
                .collect();
            if texts.is_empty() {
                return Err(anyhow!("{}: no persons in the train split", panel.display()).into());
            }
            let mut tok = train_bpe(
                texts.iter().map(String::as_str),
                *vocab_size,
                &template.terminator,
                *pre_tokenize,
            )
            .map_err(|e| anyhow!("training: {e}"))?;
            if !*no_label_tokens {
                let conts =
                    crate::train::all_continuations(&template, text.switches(), &p.taxonomy)?;
                add_label_tokens(&mut tok, &conts).map_err(|e| anyhow!("{e}"))?;
            }
            let json = to_json(&tok).map_err(|e| anyhow!("{e}"))?;
            write_atomic(out, |w| Ok(w.write_all(json.as_bytes())?))?;
            println!(
                "wrote {}: {} tokens in the vocabulary, trained on {} texts",
                out.display(),
                tok.get_vocab_size(true),
                texts.len()
            );
            align(&tok, &p, &r)
        }
        TokenizerCommand::FromGguf {
            gguf,
            out,
            pre_tokenizer,
            panel,
            input,
            text,
        } => {
            let f = std::fs::File::open(gguf)
                .with_context(|| format!("cannot open {}", gguf.display()))?;
            let meta = labor_text::gguf::read_metadata(std::io::BufReader::new(f))
                .map_err(|e| crate::lm::gguf_error(gguf, e))?;
            let tok = labor_text::gguf::tokenizer_from_metadata(&meta, pre_tokenizer.as_deref())
                .map_err(|e| crate::io::InvalidInput(format!("{}: {e}", gguf.display())))?;
            let json = to_json(&tok).map_err(|e| anyhow!("{e}"))?;
            write_atomic(out, |w| Ok(w.write_all(json.as_bytes())?))?;
            println!(
                "wrote {}: {} tokens (GGUF v{}, pre-tokenizer {:?})",
                out.display(),
                tok.get_vocab_size(true),
                meta.version,
                meta.kv
                    .get("tokenizer.ggml.pre")
                    .and_then(|v| v.as_str())
                    .unwrap_or("gpt2")
            );
            if let Some(panel) = panel {
                let (p, template) = panel_and_template(panel, input, text)?;
                let r = Renderer::new(&template, text.switches(), &p.taxonomy)
                    .map_err(|e| anyhow!(e))?;
                align(&tok, &p, &r)?;
            }
            Ok(())
        }
        TokenizerCommand::Check {
            tokenizer,
            panel,
            input,
            text,
        } => {
            let tok = load_tokenizer(tokenizer)?;
            let (p, template) = panel_and_template(panel, input, text)?;
            let r =
                Renderer::new(&template, text.switches(), &p.taxonomy).map_err(|e| anyhow!(e))?;
            align(&tok, &p, &r)
        }
    }
}
