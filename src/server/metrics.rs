//! Metrics for Prometheus (`metricsProvider.httpPort`, ZooKeeper's key; `GET /metrics` in the
//! text exposition format): the mntr figures under ZooKeeper's Prometheus names (mntr's
//! without `zk_`), Raft's state, and latency histograms the WAL stage records.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::node::Event;

/// Upper bounds of the latency buckets, in milliseconds.
const BOUNDS_MS: [f64; 14] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0,
];

/// A Prometheus histogram of durations (cumulative buckets in seconds, sum and count).
#[derive(Default)]
pub struct Histogram {
    /// Observations at or under each bound (not cumulative here; summed when rendered).
    buckets: [AtomicU64; BOUNDS_MS.len()],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let ms = d.as_secs_f64() * 1000.0;
        if let Some(i) = BOUNDS_MS.iter().position(|&b| ms <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends it as `name` (in seconds).
    pub fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, n) in BOUNDS_MS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cumulative}", b / 1000.0);
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}\n{name}_count {count}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
    }
}

/// What the WAL stage and the replica loop record between scrapes.
#[derive(Default)]
pub struct Metrics {
    /// A batch's writes and its fsync (ZooKeeper's fsynctime).
    pub fsync: Histogram,
    /// Entries per batch made durable together (group commit).
    pub batch_entries: AtomicU64,
    pub batches: AtomicU64,
    /// Leader changes this server saw.
    pub leader_changes: AtomicU64,
    /// Snapshots this server took or installed, and the size of the latest.
    pub snapshots: AtomicU64,
    pub snapshot_bytes: AtomicU64,
}

impl Metrics {
    /// Appends the recorded figures.
    pub fn render(&self, out: &mut String) {
        self.fsync
            .render("fsynctime", "Seconds to write and fsync one batch of the log.", out);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            out,
            "raft_persisted_batches",
            "Batches made durable with one fsync.",
            get(&self.batches),
        );
        counter(
            out,
            "raft_persisted_entries",
            "Log entries made durable.",
            get(&self.batch_entries),
        );
        counter(
            out,
            "raft_leader_changes",
            "Leader changes seen.",
            get(&self.leader_changes),
        );
        counter(out, "snapshots", "Snapshots taken or installed.", get(&self.snapshots));
        gauge(
            out,
            "snapshot_bytes",
            "Size of the latest snapshot.",
            get(&self.snapshot_bytes) as f64,
        );
    }
}

/// Appends a gauge.
pub fn gauge(out: &mut String, name: &str, help: &str, v: f64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

/// Appends a counter (`_total`).
pub fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(
        out,
        "# HELP {name}_total {help}\n# TYPE {name}_total counter\n{name}_total {v}"
    );
}

/// The command the HTTP endpoint sends the replica loop (never a client's: four letters only).
pub const SCRAPE: &str = "prometheus";

/// Serves `GET /metrics` until the node goes away; anything else gets 404. One request per
/// connection, headers up to 8 KiB, 5 s to send them.
pub async fn serve(listener: TcpListener, node: mpsc::UnboundedSender<Event>) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        let node = node.clone();
        tokio::spawn(async move {
            let mut req = Vec::with_capacity(512);
            let mut buf = [0u8; 1024];
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                true
            })
            .await;
            if read != Ok(true) {
                return;
            }
            let line = String::from_utf8_lossy(&req);
            let (status, body) = if line.starts_with("GET /metrics ") || line.starts_with("GET /metrics?") {
                let (tx, rx) = oneshot::channel();
                if node
                    .send(Event::FourLetter {
                        cmd: SCRAPE.into(),
                        reply: tx,
                    })
                    .is_err()
                {
                    return;
                }
                match rx.await {
                    Ok(text) => ("200 OK", text),
                    Err(_) => return,
                }
            } else {
                ("404 Not Found", "try /metrics\n".to_string())
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(body.as_bytes()).await;
            let _ = s.flush().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_in_seconds() {
        let h = Histogram::default();
        for ms in [0.05, 3.0, 3.0, 700.0, 9000.0] {
            h.observe(Duration::from_secs_f64(ms / 1000.0));
        }
        let mut out = String::new();
        h.render("fsynctime", "x", &mut out);
        assert!(out.contains("# TYPE fsynctime histogram"), "{out}");
        assert!(out.contains("fsynctime_bucket{le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("fsynctime_bucket{le=\"0.005\"} 3\n"), "{out}");
        assert!(out.contains("fsynctime_bucket{le=\"1\"} 4\n"), "{out}");
        assert!(out.contains("fsynctime_bucket{le=\"5\"} 4\n"), "{out}");
        assert!(out.contains("fsynctime_bucket{le=\"+Inf\"} 5\n"), "{out}");
        assert!(out.contains("fsynctime_count 5\n"), "{out}");
        assert!(out.contains("fsynctime_sum 9.70605\n"), "{out}");
    }
}
