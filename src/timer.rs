//! Deadlines that ask the runtime for one timer per instant they are set to. madsim's `Sleep`
//! adds a timer to the simulator's heap on every poll that finds it pending, and a timer
//! leaves the heap only when it fires: a timeout around a future that is woken many times
//! (a connection's read, a reply awaited behind others) filled the heap with dead timers, and
//! keeping it was a twentieth of a simulation's time. Real tokio needs none of this; the
//! same code runs on both.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// A point in time to wait for, registered with the runtime once per instant and waker.
pub struct Deadline {
    sleep: Pin<Box<Sleep>>,
    /// The waker the current instant's timer was registered with.
    armed: Option<Waker>,
}

impl Deadline {
    /// A deadline `d` from now.
    pub fn after(d: Duration) -> Self {
        Deadline {
            sleep: Box::pin(tokio::time::sleep(d)),
            armed: None,
        }
    }

    /// The instant it comes.
    pub fn at(&self) -> Instant {
        self.sleep.deadline()
    }

    /// Moves it to `at`.
    pub fn reset(&mut self, at: Instant) {
        if at != self.at() {
            self.sleep.as_mut().reset(at);
            self.armed = None;
        }
    }

    /// Ready once the instant has come; registers a timer only for a new instant or waker.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(w) = &self.armed {
            if w.will_wake(cx.waker()) && Instant::now() < self.at() {
                return Poll::Pending;
            }
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(()),
            Poll::Pending => {
                self.armed = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.get_mut().poll_expired(cx)
    }
}

/// `fut` did not finish in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// `fut`'s output, or `Elapsed` if `d` passes first (as `tokio::time::timeout`, with one
/// timer however often `fut` is woken).
pub async fn timeout<F: Future>(d: Duration, fut: F) -> Result<F::Output, Elapsed> {
    let mut fut = std::pin::pin!(fut);
    let mut deadline = Deadline::after(d);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        deadline.poll_expired(cx).map(|()| Err(Elapsed))
    })
    .await
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// Real time: each instant is a lower bound (a timer never fires early); the upper bounds
    /// are loose, for a loaded machine.
    const LATE: Duration = Duration::from_secs(2);

    #[test]
    fn a_timeout_gives_the_output_or_elapses_at_its_instant() {
        runtime().block_on(async {
            assert_eq!(timeout(Duration::from_millis(50), async { 7 }).await, Ok(7));
            let t0 = Instant::now();
            let slow = tokio::time::sleep(Duration::from_secs(30));
            assert_eq!(timeout(Duration::from_millis(50), slow).await, Err(Elapsed));
            let took = t0.elapsed();
            assert!(took >= Duration::from_millis(50) && took < LATE, "{took:?}");
            let (tx, rx) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = tx.send(5);
            });
            assert_eq!(timeout(Duration::from_secs(30), rx).await, Ok(Ok(5)));
        });
    }

    /// Woken many times by something else, a deadline still comes at its instant, and a
    /// moved one at the new instant.
    #[test]
    fn a_deadline_comes_at_its_instant_however_often_its_task_wakes() {
        runtime().block_on(async {
            let t0 = Instant::now();
            let mut d = Deadline::after(Duration::from_millis(100));
            let mut ticks = tokio::time::interval(Duration::from_millis(5));
            let mut woken = 0;
            let fired_at = loop {
                tokio::select! {
                    _ = &mut d => break t0.elapsed(),
                    _ = ticks.tick() => woken += 1,
                }
            };
            assert!(
                fired_at >= Duration::from_millis(100) && fired_at < LATE,
                "{fired_at:?}"
            );
            assert!(woken > 5, "woken {woken} times");
            d.reset(t0 + Duration::from_millis(250));
            assert_eq!(d.at(), t0 + Duration::from_millis(250));
            (&mut d).await;
            let took = t0.elapsed();
            assert!(took >= Duration::from_millis(250) && took < LATE, "{took:?}");
        });
    }
}
