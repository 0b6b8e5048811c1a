//! Time for the manager: a monotonic clock for timers and the wall clock for `since`.
//! Tests drive a [`FakeClock`] so restart back-off and timeouts are checked exactly.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub trait Clock {
    /// Monotonic time since an arbitrary origin.
    fn now(&self) -> Duration;
    fn wall(&self) -> SystemTime;
}

/// The real clocks.
#[derive(Debug, Clone)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told; clones share the time.
#[derive(Debug, Clone)]
pub struct FakeClock {
    inner: Arc<Mutex<(Duration, SystemTime)>>,
}

impl FakeClock {
    /// Starts at monotonic 0 and the given wall time.
    pub fn new(wall: SystemTime) -> Self {
        FakeClock {
            inner: Arc::new(Mutex::new((Duration::ZERO, wall))),
        }
    }

    pub fn advance(&self, d: Duration) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += d;
        g.1 += d;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Duration {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).0
    }
    fn wall(&self) -> SystemTime {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).1
    }
}
