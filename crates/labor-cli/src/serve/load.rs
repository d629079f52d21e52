//! `labor bench serve`: a bounded load test of a running `labor serve` on loopback. C
//! connections (HTTP/1.1 keep-alive) each send requests one after another until N have been
//! sent in all; every answer's status is counted and every latency kept.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::bad;
use crate::io::CmdResult;

#[derive(Debug, Args)]
pub struct BenchServeArgs {
    /// The server's address (loopback only).
    #[arg(long)]
    pub addr: std::net::SocketAddr,
    /// Route to post to.
    #[arg(long, default_value = "/v1/predict")]
    pub path: String,
    /// Request body (a JSON file).
    #[arg(long)]
    pub body: PathBuf,
    /// Connections sending at once.
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// Requests in all.
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Stop after this many seconds whatever is left.
    #[arg(long, default_value_t = 120.0)]
    pub max_seconds: f64,
}

/// Reads one HTTP/1.1 response (Content-Length bodies) and returns its status.
async fn response(s: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<u16> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status: u16 = head
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| anyhow!("bad status line"))?;
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())
                        .flatten()
                })
                .ok_or_else(|| anyhow!("no content-length"))?;
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    bail!("connection closed mid-body");
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..end + 4 + len);
            return Ok(status);
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

pub fn run(a: &BenchServeArgs) -> CmdResult {
    if !a.addr.ip().is_loopback() {
        return Err(bad!("--addr {}: load tests run against loopback only", a.addr).into());
    }
    let body =
        std::fs::read(&a.body).map_err(|e| anyhow!("cannot read {}: {e}", a.body.display()))?;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        a.path,
        a.addr,
        body.len()
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(&body);
    let request = std::sync::Arc::new(request);
    let left = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(a.requests));
    let deadline = Instant::now() + Duration::from_secs_f64(a.max_seconds);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let t0 = Instant::now();
    let results: Vec<(Vec<(u16, f64)>, usize)> = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..a.concurrency.max(1) {
            let (request, left, addr) = (request.clone(), left.clone(), a.addr);
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                let mut errors = 0usize;
                let mut conn: Option<TcpStream> = None;
                let mut buf = Vec::new();
                while Instant::now() < deadline {
                    let claimed = left.fetch_update(
                        std::sync::atomic::Ordering::SeqCst,
                        std::sync::atomic::Ordering::SeqCst,
                        |n| n.checked_sub(1),
                    );
                    if claimed.is_err() {
                        break;
                    }
                    let t = Instant::now();
                    if conn.is_none() {
                        conn = TcpStream::connect(addr).await.ok();
                        buf.clear();
                    }
                    let Some(s) = conn.as_mut() else {
                        errors += 1;
                        continue;
                    };
                    let r = async {
                        s.write_all(&request).await?;
                        response(s, &mut buf).await
                    }
                    .await;
                    match r {
                        Ok(status) => out.push((status, t.elapsed().as_secs_f64())),
                        Err(_) => {
                            errors += 1;
                            conn = None;
                        }
                    }
                }
                (out, errors)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.unwrap_or_default());
        }
        all
    });
    let secs = t0.elapsed().as_secs_f64();
    let errors: usize = results.iter().map(|r| r.1).sum();
    let mut lat: Vec<f64> = results
        .iter()
        .flat_map(|r| r.0.iter().map(|x| x.1))
        .collect();
    let mut statuses: std::collections::BTreeMap<u16, usize> = Default::default();
    for r in &results {
        for (s, _) in &r.0 {
            *statuses.entry(*s).or_default() += 1;
        }
    }
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| {
        if lat.is_empty() {
            f64::NAN
        } else {
            lat[((lat.len() as f64 - 1.0) * p).round() as usize] * 1000.0
        }
    };
    println!(
        "{} requests to {}{} with {} connections in {secs:.2} s: {:.1} requests/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; statuses {statuses:?}; connection errors {errors}",
        lat.len(),
        a.addr,
        a.path,
        a.concurrency,
        lat.len() as f64 / secs,
        q(0.5),
        q(0.99),
        q(1.0),
    );
    Ok(())
}
