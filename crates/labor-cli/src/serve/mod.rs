//! `labor serve`: a fitted model (or several) behind an HTTP JSON API and one self-contained web
//! page, on axum/tokio (docs/predict.md).
//!
//! Each model runs on a thread of its own (models are not shared between threads), fed through
//! a bounded queue: a request waits for its turn, a full queue is answered 503 at once, and a
//! request that waits longer than the timeout is answered 504 (its job is skipped when its turn
//! comes, as is the job of a client that has gone; `/healthz` counts both and shows each queue's
//! depth). SIGTERM or SIGINT stops accepting connections, lets the requests in flight finish
//! within a grace period (`--grace-s`) and exits 0. Every input is bounded: body bytes,
//! histories per request, records per history, draws and years of a simulation. Every error is a JSON body `{"error": "..."}` with a 4xx or
//! 5xx status; nothing a client sends can stop the server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Args;
use labor_data::Taxonomy;
use labor_data::predictions::Predictor;
use labor_forecast::history::{self, History, HistoryJson, Limits};
use labor_forecast::next::predict_history;
use labor_forecast::simulate::{self, SimOptions, parse_setting};
use labor_forecast::tables;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::bad;
use crate::io::CmdResult;
use crate::model::{ModelArgs, default_taxonomy, with_predictor};
use crate::text::TextArgs;

pub mod load;

const PAGE: &str = include_str!("page.html");

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A model directory to serve, `DIR` or `NAME=DIR`; repeatable (the first is the default).
    #[arg(long = "model", value_name = "[NAME=]DIR", required = true)]
    pub models: Vec<String>,
    /// Address to listen on (loopback by default; another address exposes the server).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Label taxonomy (CSV); default: the first model's world taxonomy, else the embedded one.
    #[arg(long, value_name = "CSV")]
    pub taxonomy: Option<PathBuf>,
    #[command(flatten)]
    pub text: TextArgs,
    /// Device for language models: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Precision for language models: auto, f32 or bf16.
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
    /// Records a history may hold.
    #[arg(long, default_value_t = Limits::default().max_records)]
    pub max_records: usize,
    /// Histories per predict request.
    #[arg(long, default_value_t = 64)]
    pub max_histories: usize,
    /// Draws per simulate request.
    #[arg(long, default_value_t = 200)]
    pub max_draws: usize,
    /// Years per simulate request.
    #[arg(long, default_value_t = 20)]
    pub max_years: usize,
    /// Requests waiting per model; more are answered 503.
    #[arg(long, default_value_t = 256)]
    pub queue: usize,
    /// Seconds a request may take, waiting included; then it is answered 504.
    #[arg(long, default_value_t = 30.0)]
    pub timeout_s: f64,
    /// Seconds the requests in flight may take to finish after SIGTERM or SIGINT.
    #[arg(long, default_value_t = 10.0)]
    pub grace_s: f64,
}

/// A bounded request's work for a model thread.
enum Job {
    Predict {
        histories: Vec<History>,
        top: usize,
        deadline: Instant,
        reply: oneshot::Sender<Result<Value, String>>,
    },
    Simulate {
        history: History,
        settings: Vec<simulate::Setting>,
        opts: SimOptions,
        deadline: Instant,
        reply: oneshot::Sender<Result<Value, String>>,
    },
}

struct ModelHandle {
    name: String,
    tx: SyncSender<Job>,
    /// Jobs sent and not yet taken by the model's thread.
    queued: Arc<AtomicUsize>,
    /// Jobs skipped when their turn came: past their deadline, or their client gone.
    dropped: Arc<AtomicU64>,
}

struct AppState {
    models: Vec<ModelHandle>,
    taxonomy: Arc<Taxonomy>,
    limits: Limits,
    max_histories: usize,
    max_draws: usize,
    max_years: usize,
    timeout: Duration,
    labels: Value,
}

/// An error answer: status and `{"error": message}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({"error": self.1}))).into_response()
    }
}

fn unprocessable(msg: String) -> ApiError {
    ApiError(StatusCode::UNPROCESSABLE_ENTITY, msg)
}

/// The body as JSON of type T: oversized bodies 413, bad JSON 400, wrong shape 422.
fn body<T: for<'de> Deserialize<'de>>(b: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let b = b.map_err(|e| ApiError(e.status(), e.body_text()))?;
    let v: Value = serde_json::from_slice(&b)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")))?;
    serde_json::from_value(v).map_err(|e| unprocessable(format!("request: {e}")))
}

impl AppState {
    fn model(&self, name: Option<&str>) -> Result<&ModelHandle, ApiError> {
        match name {
            None => Ok(&self.models[0]),
            Some(n) => self.models.iter().find(|m| m.name == n).ok_or_else(|| {
                ApiError(
                    StatusCode::NOT_FOUND,
                    format!(
                        "no model {n:?}; served: {}",
                        self.models
                            .iter()
                            .map(|m| m.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            }),
        }
    }

    fn history(&self, h: HistoryJson, i: usize) -> Result<History, ApiError> {
        history::from_json(h, &self.taxonomy, &(i + 1).to_string(), &self.limits)
            .map_err(|e| unprocessable(format!("histories[{i}].{e}")))
    }

    /// Queues a job and waits for its answer within the timeout.
    async fn run(
        &self,
        model: &ModelHandle,
        make: impl FnOnce(Instant, oneshot::Sender<Result<Value, String>>) -> Job,
    ) -> Result<Value, ApiError> {
        let deadline = Instant::now() + self.timeout;
        let (tx, rx) = oneshot::channel();
        // Counted before the send, so that the thread's decrement never comes first.
        model.queued.fetch_add(1, Ordering::SeqCst);
        let sent = model.tx.try_send(make(deadline, tx));
        if sent.is_err() {
            model.queued.fetch_sub(1, Ordering::SeqCst);
        }
        match sent {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "model {:?} is busy: its queue is full; retry later",
                        model.name
                    ),
                ));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("model {:?} has stopped", model.name),
                ));
            }
        }
        match tokio::time::timeout(self.timeout, rx).await {
            Err(_) => Err(ApiError(
                StatusCode::GATEWAY_TIMEOUT,
                format!("no answer within {:.1} s", self.timeout.as_secs_f64()),
            )),
            Ok(Err(_)) => Err(ApiError(
                StatusCode::GATEWAY_TIMEOUT,
                "the request's time ran out while it waited".into(),
            )),
            Ok(Ok(Err(e))) => Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, e)),
            Ok(Ok(Ok(v))) => Ok(v),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    top: Option<usize>,
    #[serde(default)]
    histories: Option<Vec<HistoryJson>>,
    #[serde(default)]
    history: Option<HistoryJson>,
}

async fn predict(
    State(s): State<Arc<AppState>>,
    b: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let r: PredictRequest = body(b)?;
    let given: Vec<HistoryJson> = match (r.histories, r.history) {
        (Some(h), None) => h,
        (None, Some(h)) => vec![h],
        _ => return Err(unprocessable("give either `history` or `histories`".into())),
    };
    if given.is_empty() || given.len() > s.max_histories {
        return Err(unprocessable(format!(
            "histories: {} given; 1 to {} are accepted",
            given.len(),
            s.max_histories
        )));
    }
    let histories = given
        .into_iter()
        .enumerate()
        .map(|(i, h)| s.history(h, i))
        .collect::<Result<Vec<_>, _>>()?;
    let top = r.top.unwrap_or(10).clamp(1, s.taxonomy.len());
    let m = s.model(r.model.as_deref())?;
    let v = s
        .run(m, |deadline, reply| Job::Predict {
            histories,
            top,
            deadline,
            reply,
        })
        .await?;
    Ok(axum::Json(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SimulateRequest {
    #[serde(default)]
    model: Option<String>,
    history: HistoryJson,
    #[serde(default)]
    years: Option<usize>,
    #[serde(default)]
    draws: Option<usize>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    set: Vec<String>,
}

async fn simulate_route(
    State(s): State<Arc<AppState>>,
    b: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let r: SimulateRequest = body(b)?;
    let history = s.history(r.history, 0)?;
    let years = r.years.unwrap_or(5);
    let draws = r.draws.unwrap_or(20);
    if years == 0 || years > s.max_years {
        return Err(unprocessable(format!(
            "years: {years}; 1 to {} are accepted",
            s.max_years
        )));
    }
    if draws == 0 || draws > s.max_draws {
        return Err(unprocessable(format!(
            "draws: {draws}; 1 to {} are accepted",
            s.max_draws
        )));
    }
    if r.set.len() > 5 {
        return Err(unprocessable("set: at most 5 settings".into()));
    }
    let settings = r
        .set
        .iter()
        .map(|x| parse_setting(x, None).map_err(|e| unprocessable(format!("set: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let m = s.model(r.model.as_deref())?;
    let opts = SimOptions {
        years,
        draws,
        seed: r.seed.unwrap_or(0),
        cut: None,
    };
    let v = s
        .run(m, |deadline, reply| Job::Simulate {
            history,
            settings,
            opts,
            deadline,
            reply,
        })
        .await?;
    Ok(axum::Json(v))
}

async fn labels(State(s): State<Arc<AppState>>) -> axum::Json<Value> {
    axum::Json(s.labels.clone())
}

async fn healthz(State(s): State<Arc<AppState>>) -> axum::Json<Value> {
    axum::Json(json!({
        "status": "ok",
        "models": s.models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        "queues": s.models.iter().map(|m| json!({
            "model": m.name,
            "state": "loaded",
            "waiting": m.queued.load(Ordering::SeqCst),
            "dropped": m.dropped.load(Ordering::SeqCst),
        })).collect::<Vec<_>>(),
    }))
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:",
            ),
        ],
        PAGE,
    )
}

async fn not_found() -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "no such route; try GET /, /healthz, /v1/labels, POST /v1/predict, /v1/simulate".into(),
    )
}

/// The routes over a state.
fn router(state: Arc<AppState>, max_body: usize) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/v1/labels", get(labels))
        .route("/v1/predict", post(predict))
        .route("/v1/simulate", post(simulate_route))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// One job on a model thread; a job past its deadline or whose client has gone is counted in
/// `dropped` and not run.
fn answer(p: &mut dyn Predictor, taxonomy: &Taxonomy, job: Job, dropped: &AtomicU64) {
    match job {
        Job::Predict {
            histories,
            top,
            deadline,
            reply,
        } => {
            if Instant::now() > deadline || reply.is_closed() {
                dropped.fetch_add(1, Ordering::SeqCst);
                return;
            }
            let out: Result<Vec<Value>, String> = histories
                .iter()
                .map(|h| {
                    predict_history(p, taxonomy, h).map(|d| {
                        crate::predict::answer_json(p.name(), taxonomy, &h.person, &d, top)
                    })
                })
                .collect();
            let _ = reply.send(out.map(|v| json!({"model": p.name(), "predictions": v})));
        }
        Job::Simulate {
            history,
            settings,
            opts,
            deadline,
            reply,
        } => {
            if Instant::now() > deadline || reply.is_closed() {
                dropped.fetch_add(1, Ordering::SeqCst);
                return;
            }
            let (starts, _) =
                simulate::starts(std::slice::from_ref(&history.person), None, &settings);
            let out = simulate::simulate(p, taxonomy, &starts, &settings, &opts, &mut |_| {}).map(
                |sims| {
                    let labels = taxonomy.labels();
                    let mut paths: Vec<Vec<Value>> = vec![Vec::new(); opts.draws];
                    for r in &sims {
                        let l = &labels[r.label.index()];
                        paths[r.draw as usize].push(json!({
                            "year": r.year, "code": l.code, "title": l.title,
                            "category": labor_forecast::category(taxonomy, r.label),
                        }));
                    }
                    let shares: Vec<Value> = tables::shares_by_year(&sims, taxonomy)
                        .into_iter()
                        .filter(|r| r.share > 0.0)
                        .map(|r| json!({"year": r.year, "category": r.category, "share": r.share}))
                        .collect();
                    json!({
                        "model": p.name(),
                        "categories": labor_forecast::categories(taxonomy),
                        "paths": paths,
                        "shares": shares,
                    })
                },
            );
            let _ = reply.send(out);
        }
    }
}

/// Starts a model's thread; returns its handle once the model is loaded (or the load error).
fn start_model(
    args: ModelArgs,
    taxonomy: Arc<Taxonomy>,
    queue: usize,
) -> anyhow::Result<ModelHandle> {
    let name = args.name.clone().expect("named");
    let (tx, rx) = sync_channel::<Job>(queue);
    let queued = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let (q, dr) = (queued.clone(), dropped.clone());
    let (ready_tx, ready_rx) = sync_channel::<anyhow::Result<()>>(1);
    std::thread::Builder::new()
        .name(format!("model {name}"))
        .spawn(move || {
            let r = with_predictor(&args, &taxonomy, |p| {
                let _ = ready_tx.send(Ok(()));
                for job in rx {
                    q.fetch_sub(1, Ordering::SeqCst);
                    // A panic inside a model answers nothing (the request times out) but the
                    // thread and the server go on.
                    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        answer(p, &taxonomy, job, &dr)
                    }));
                    if caught.is_err() {
                        eprintln!("a request made the model panic; it was dropped");
                    }
                }
                Ok(())
            });
            if let Err(e) = r {
                // The error itself, so that invalid input still exits 2.
                let _ = ready_tx.send(Err(e));
            }
        })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(ModelHandle {
            name,
            tx,
            queued,
            dropped,
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(anyhow!("model {name:?} failed to start")),
    }
}

/// `NAME=DIR` or `DIR` (named after the directory).
fn parse_model(s: &str) -> (String, PathBuf) {
    match s.split_once('=') {
        Some((n, d)) if !n.is_empty() && !n.contains('/') => (n.to_string(), PathBuf::from(d)),
        _ => {
            let p = PathBuf::from(s);
            let name = p
                .components()
                .rev()
                .find_map(|c| match c {
                    std::path::Component::Normal(n) => n.to_str().map(String::from),
                    _ => None,
                })
                .filter(|n| n != "final" && n != "best")
                .or_else(|| {
                    p.parent()
                        .and_then(|q| q.file_name())
                        .and_then(|n| n.to_str())
                        .map(String::from)
                })
                .unwrap_or_else(|| "model".into());
            (name, p)
        }
    }
}

pub fn run(a: &ServeArgs) -> CmdResult {
    let parsed: Vec<(String, PathBuf)> = a.models.iter().map(|m| parse_model(m)).collect();
    for (i, (n, _)) in parsed.iter().enumerate() {
        if parsed[..i].iter().any(|(m, _)| m == n) {
            return Err(bad!("--model: two models named {n:?}; name them NAME=DIR").into());
        }
    }
    let taxonomy = Arc::new(match &a.taxonomy {
        Some(t) => crate::io::load_taxonomy(Some(t))?,
        None => default_taxonomy(&parsed[0].1)?,
    });
    let mut models = Vec::new();
    for (name, dir) in parsed {
        let args = ModelArgs {
            model: dir.clone(),
            name: Some(name.clone()),
            text: a.text.clone(),
            max_context: None,
            device: a.device.clone(),
            dtype: a.dtype.clone(),
            mem_mib: 512,
        };
        let m = start_model(args, taxonomy.clone(), a.queue)?;
        eprintln!("serving {name} from {}", dir.display());
        models.push(m);
    }
    let labels = json!({"labels": taxonomy.labels().iter().map(|l| json!({
        "code": l.code, "title": l.title, "group": l.group,
        "kind": format!("{:?}", l.kind).to_lowercase(),
    })).collect::<Vec<_>>()});
    let state = Arc::new(AppState {
        models,
        taxonomy,
        limits: Limits {
            max_records: a.max_records,
        },
        max_histories: a.max_histories,
        max_draws: a.max_draws,
        max_years: a.max_years,
        timeout: Duration::from_secs_f64(a.timeout_s.max(0.001)),
        labels,
    });
    let app = router(state, a.max_body_bytes);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.addr)
            .await
            .map_err(|e| anyhow!("cannot listen on {}: {e}", a.addr))?;
        let local = listener.local_addr()?;
        // The first line on stdout is the address (tests and scripts read it; port 0 picks one).
        println!("listening on http://{local}");
        use std::io::Write;
        std::io::stdout().flush()?;
        let grace = Duration::from_secs_f64(a.grace_s.max(0.0));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            stop_signal().await;
            eprintln!(
                "stopping: no new connections; the requests in flight have {:.1} s to finish",
                grace.as_secs_f64()
            );
            let _ = stop_tx.send(());
        });
        let grace_over = async move {
            if stop_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            r = server => r.map_err(|e| anyhow!("server: {e}")),
            () = grace_over => {
                eprintln!("stopping: the grace period is over; requests still in flight were cut");
                Ok(())
            }
        }
    })?;
    eprintln!("stopped");
    Ok(())
}

/// SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn stop_signal() {
    let int = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = int => {}
        () = term => {}
    }
}
