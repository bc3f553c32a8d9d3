//! Per-node clocks the nemesis controls: a wall clock it can skew and make drift at run time,
//! and a timer rate (Raft ticks, session timeouts) fixed per node when the run starts.

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::Arc;
use zraft::server::node::Clock;

/// A node's clock; clones share state, so the nemesis keeps one and the server another.
#[derive(Clone, Default)]
pub struct SkewClock {
    offset_ms: Arc<AtomicI64>,
    drift_ppm: Arc<AtomicI64>,
    since_ms: Arc<AtomicI64>,
    rate_ppm: i64,
    /// Only every n-th Raft tick reaches the server (0 or 1: every one).
    stretch: Arc<AtomicU32>,
}

/// Simulated wall-clock milliseconds (madsim's system time).
fn sim_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl SkewClock {
    /// A clock whose timers run `rate_ppm` fast (negative: slow).
    pub fn with_rate(rate_ppm: i64) -> Self {
        SkewClock {
            rate_ppm,
            ..SkewClock::default()
        }
    }

    /// Makes the server's Raft timers lag: only every `n`-th tick is delivered (1: none lost).
    pub fn set_tick_stretch(&self, n: u32) {
        self.stretch.store(n, Ordering::Relaxed);
    }

    /// Steps the wall clock by `offset_ms` and makes it drift `drift_ppm` from now on.
    pub fn skew(&self, offset_ms: i64, drift_ppm: i64) {
        self.offset_ms.store(offset_ms, Ordering::Relaxed);
        self.drift_ppm.store(drift_ppm, Ordering::Relaxed);
        self.since_ms.store(sim_now_ms(), Ordering::Relaxed);
    }
}

impl Clock for SkewClock {
    fn now_ms(&self) -> i64 {
        let now = sim_now_ms();
        let since = self.since_ms.load(Ordering::Relaxed);
        now + self.offset_ms.load(Ordering::Relaxed)
            + (now - since) * self.drift_ppm.load(Ordering::Relaxed) / 1_000_000
    }

    fn rate_ppm(&self) -> i64 {
        self.rate_ppm
    }

    fn tick_stretch(&self) -> Option<Arc<AtomicU32>> {
        Some(self.stretch.clone())
    }
}
