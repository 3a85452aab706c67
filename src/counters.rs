//! Per-session counters: what fpio did, so tests and users can prove it.
//! The numbering is the C ABI (`enum fpio_counter`): append only.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($variant:ident = $name:literal,)*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u32)]
        pub enum Counter { $($variant,)* }

        impl Counter {
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];

            /// NUL-terminated, so the C API can hand out the pointer.
            pub fn name(self) -> &'static str {
                match self { $(Counter::$variant => concat!($name, "\0"),)* }
            }
        }
    };
}

counters! {
    OpensPassthrough = "opens_passthrough",
    OpensDirect = "opens_direct",
    OpensCached = "opens_cached",
    OpensSharedDirect = "opens_shared_direct",
    FallbackNotLive = "fallback_not_live",
    FallbackDeclined = "fallback_declined",
    FallbackBadFd = "fallback_bad_fd",
    FallbackNotRegular = "fallback_not_regular",
    FallbackAccess = "fallback_access",
    FallbackCachedOpens = "fallback_cached_opens",
    FallbackRegisterFailed = "fallback_register_failed",
    BusyRefused = "busy_refused",
    BackingIdsLive = "backing_ids_live",
    BackingOpened = "backing_opened",
    BackingClosed = "backing_closed",
    ReplyFailed = "reply_failed",
    ReqRead = "req_read",
    ReqWrite = "req_write",
    ReqGetxattr = "req_getxattr",
    ReqTotal = "req_total",
    FallbackDirectOpens = "fallback_direct_opens",
    StaleRefused = "stale_refused",
    FallbackRequestUnseen = "fallback_request_unseen",
}

impl Counter {
    pub fn from_raw(raw: u32) -> Option<Self> {
        Self::ALL.get(raw as usize).copied()
    }

    /// Counts of requests, which fpio knows only where it sees them.
    pub fn is_request(self) -> bool {
        matches!(
            self,
            Counter::ReqRead | Counter::ReqWrite | Counter::ReqGetxattr | Counter::ReqTotal
        )
    }

    /// The name without its NUL.
    pub fn label(self) -> &'static str {
        self.name().trim_end_matches('\0')
    }
}

/// Stripes of counters: each thread adds to its own (picked round-robin on
/// first use), so requests on several threads do not bounce one cache line;
/// a read sums them (with wrapping arithmetic, so a decrement on another
/// stripe than its increment still adds up).
const STRIPES: usize = 8;

#[repr(align(64))]
#[derive(Debug)]
struct Stripe(Vec<AtomicU64>);

#[derive(Debug)]
pub struct Counters {
    stripes: Vec<Stripe>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            stripes: (0..STRIPES)
                .map(|_| Stripe(Counter::ALL.iter().map(|_| AtomicU64::new(0)).collect()))
                .collect(),
        }
    }
}

fn my_stripe() -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static MINE: usize = (NEXT.fetch_add(1, Ordering::Relaxed) as usize) % STRIPES;
    }
    MINE.with(|m| *m)
}

impl Counters {
    pub fn add(&self, c: Counter, n: u64) {
        self.stripes[my_stripe()].0[c as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn inc(&self, c: Counter) {
        self.add(c, 1);
    }

    pub fn dec(&self, c: Counter) {
        self.stripes[my_stripe()].0[c as usize].fetch_sub(1, Ordering::Relaxed);
    }

    pub fn get(&self, c: Counter) -> u64 {
        self.stripes.iter().fold(0u64, |sum, s| {
            sum.wrapping_add(s.0[c as usize].load(Ordering::Relaxed))
        })
    }

    /// `name value` lines, one per counter.
    pub fn render(&self) -> String {
        Counter::ALL
            .iter()
            .map(|&c| format!("{} {}\n", c.label(), self.get(c)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_is_stable() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
            assert_eq!(Counter::from_raw(i as u32), Some(*c));
        }
        assert_eq!(Counter::ReqTotal as u32, 19);
        assert_eq!(Counter::FallbackDirectOpens as u32, 20);
        assert_eq!(Counter::from_raw(Counter::ALL.len() as u32), None);
    }

    #[test]
    fn stripes_add_up_across_threads() {
        let c = std::sync::Arc::new(Counters::default());
        let threads: Vec<_> = (0..12)
            .map(|i| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.inc(Counter::BackingIdsLive);
                    }
                    // Decrements on other threads than their increments.
                    if i % 2 == 0 {
                        for _ in 0..1500 {
                            c.dec(Counter::BackingIdsLive);
                        }
                    } else {
                        for _ in 0..500 {
                            c.dec(Counter::BackingIdsLive);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.get(Counter::BackingIdsLive), 0);
    }

    #[test]
    fn render_lists_every_counter() {
        let c = Counters::default();
        c.inc(Counter::ReqRead);
        let r = c.render();
        assert!(r.contains("req_read 1\n"));
        assert_eq!(r.lines().count(), Counter::ALL.len());
    }
}
