//! Message-level faults on the peer transport, for the simulation harness only (`--cfg
//! madsim`): single Raft messages dropped, duplicated, delayed past their successors, or an
//! old one replayed as if from a closed connection, so the whole-system harness reaches
//! what the pure-core test (`tests/raft_model.rs`) reaches. madsim runs a simulation on one
//! thread, so the setting is thread-local: parallel runs do not mix; its randomness is a
//! seeded ChaCha stream, so a seed replays bit for bit.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cell::RefCell;
use std::time::Duration;

/// How peer messages are mistreated while message chaos is on.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageChaos {
    /// Chance that a message is lost.
    pub drop: f64,
    /// Chance that a message is delivered twice.
    pub duplicate: f64,
    /// Chance that a message is held back, by up to `max_delay`, behind later ones.
    pub delay: f64,
    pub max_delay: Duration,
    /// Chance that, besides the message, an old message to the same peer is sent again.
    pub replay: f64,
    /// Seeds the stream every decision is drawn from.
    pub seed: u64,
}

/// What happens to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Deliver,
    Drop,
    Duplicate,
    Delay(Duration),
}

thread_local! {
    static CHAOS: RefCell<Option<(MessageChaos, ChaCha8Rng)>> = const { RefCell::new(None) };
    /// Messages dropped, duplicated, delayed and replayed so far on this thread.
    static STATS: RefCell<[u64; 4]> = const { RefCell::new([0; 4]) };
}

/// Takes the counts of messages dropped, duplicated, delayed and replayed since the last take
/// (a sweep shows whether its seeds mistreated any).
pub fn take_stats() -> [u64; 4] {
    STATS.with(|s| std::mem::take(&mut *s.borrow_mut()))
}

fn count(i: usize) {
    STATS.with(|s| s.borrow_mut()[i] += 1);
}

/// Turns message chaos on (Some) or off (None) for this simulation.
pub fn set(c: Option<MessageChaos>) {
    CHAOS.with(|s| *s.borrow_mut() = c.map(|c| (c.clone(), ChaCha8Rng::seed_from_u64(c.seed))));
}

/// The fate of the next message, and whether an old message should be replayed with it.
pub fn decide() -> (Fate, bool) {
    CHAOS.with(|s| {
        let mut s = s.borrow_mut();
        let Some((c, rng)) = s.as_mut() else {
            return (Fate::Deliver, false);
        };
        let r: f64 = rng.gen();
        let fate = if r < c.drop {
            count(0);
            Fate::Drop
        } else if r < c.drop + c.duplicate {
            count(1);
            Fate::Duplicate
        } else if r < c.drop + c.duplicate + c.delay {
            count(2);
            let us = rng.gen_range(1..=c.max_delay.as_micros().max(1) as u64);
            Fate::Delay(Duration::from_micros(us))
        } else {
            Fate::Deliver
        };
        (fate, rng.gen_bool(c.replay.clamp(0.0, 1.0)))
    })
}

/// Picks which of `n` remembered messages to replay (counted as replayed).
pub fn pick(n: usize) -> usize {
    count(3);
    CHAOS.with(|s| s.borrow_mut().as_mut().map_or(0, |(_, rng)| rng.gen_range(0..n.max(1))))
}
