//! Abuse and cost: a per-client rate limit on the processing and share routes, and a daily
//! budget of images inferred (with one instance, it bounds a day's GPU time).
//!
//! The limiter is `governor`'s keyed token bucket (GCRA), one bucket per client address; the
//! client is the connecting address, or with `TRUSTED_PROXIES` set (Cloud Run's front end is
//! one) the `X-Forwarded-For` entry that the outermost trusted proxy saw connect. The budget is
//! a counter of the current UTC day, in memory: a restart starts the day's count again, so with
//! more than one instance or frequent restarts it bounds each instance's day, not the service's.

use std::{
    net::IpAddr,
    num::NonZeroU32,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::http::HeaderMap;
use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};
use shared::refusal::Refusal;

/// The per-client rate limit.
pub struct Limiter {
    keyed: Option<DefaultKeyedRateLimiter<IpAddr>>,
    trusted_proxies: usize,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("on", &self.keyed.is_some())
            .field("trusted_proxies", &self.trusted_proxies)
            .finish()
    }
}

impl Limiter {
    /// `per_minute` requests per client (0: no limit), a burst of as many.
    pub fn new(per_minute: u32, trusted_proxies: usize) -> Self {
        Limiter {
            keyed: NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            trusted_proxies,
        }
    }

    /// Who is asking: the connecting address, or, behind `trusted_proxies` proxies, the address
    /// the outermost of them saw (the `trusted_proxies`-th `X-Forwarded-For` entry from the
    /// right; each proxy appends the address it was connected from). Entries a client wrote
    /// itself are to the left of those and are never read. `None` when nothing says.
    pub fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        if self.trusted_proxies == 0 {
            return peer;
        }
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        entries
            .len()
            .checked_sub(self.trusted_proxies)
            .and_then(|i| entries.get(i))
            .and_then(|e| e.parse().ok())
            .or(peer)
    }

    /// Take one request of `client`'s allowance, or a 429 `rate_limited` with `Retry-After`.
    pub fn check(&self, client: IpAddr) -> Result<(), Refusal> {
        let Some(keyed) = &self.keyed else {
            return Ok(());
        };
        keyed.check_key(&client).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            Refusal::new(
                429,
                "rate_limited",
                "too many requests from this address; please wait a little",
            )
            .retry_after(secs.max(1))
        })
    }

    /// Forget clients whose buckets are full again (memory stays bounded by recent clients).
    pub fn sweep(&self) {
        if let Some(keyed) = &self.keyed {
            keyed.retain_recent();
            keyed.shrink_to_fit();
        }
    }

    /// Clients remembered now.
    pub fn clients(&self) -> usize {
        self.keyed.as_ref().map_or(0, |k| k.len())
    }
}

const DAY: u64 = 86_400;

/// Images inferred per UTC day, across the instance.
#[derive(Debug)]
pub struct Budget {
    /// 0: no budget.
    limit: u64,
    /// (day number, images taken that day).
    day: Mutex<(u64, u64)>,
    /// Images taken in all, for the metrics.
    pub taken: AtomicU64,
}

impl Budget {
    pub fn new(limit: u64) -> Self {
        Budget {
            limit,
            day: Mutex::new((0, 0)),
            taken: AtomicU64::new(0),
        }
    }

    /// Take one image of the day's budget at `now` (unix seconds), or a 429
    /// `daily_budget_exhausted` with `Retry-After` until the next UTC midnight.
    pub fn take(&self, now: u64) -> Result<(), Refusal> {
        if self.limit == 0 {
            self.taken.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let mut day = self.day.lock().unwrap_or_else(|e| e.into_inner());
        if day.0 != now / DAY {
            *day = (now / DAY, 0);
        }
        if day.1 >= self.limit {
            let until_midnight = DAY - now % DAY;
            return Err(Refusal::new(
                429,
                "daily_budget_exhausted",
                "today's processing budget is spent; already-made results and shares are still served. It resets at midnight UTC",
            )
            .retry_after(until_midnight));
        }
        day.1 += 1;
        self.taken.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Images left today (`None`: no budget).
    pub fn left(&self, now: u64) -> Option<u64> {
        if self.limit == 0 {
            return None;
        }
        let day = self.day.lock().unwrap_or_else(|e| e.into_inner());
        let used = if day.0 == now / DAY { day.1 } else { 0 };
        Some(self.limit.saturating_sub(used))
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().unwrap());
        h
    }

    #[test]
    fn the_client_is_read_only_from_trusted_proxies() {
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        let spoofed = xff("6.6.6.6, 1.2.3.4");
        // No trusted proxy: the header is the client's own words, ignored.
        assert_eq!(Limiter::new(10, 0).client(Some(peer), &spoofed), Some(peer));
        // One (Cloud Run): the right-most entry, what the proxy saw; the spoofed one is not read.
        assert_eq!(
            Limiter::new(10, 1).client(Some(peer), &spoofed),
            Some("1.2.3.4".parse().unwrap())
        );
        // Two: the second from the right.
        assert_eq!(
            Limiter::new(10, 2).client(Some(peer), &spoofed),
            Some("6.6.6.6".parse().unwrap())
        );
        // Fewer entries than proxies, or garbage: the connecting address.
        assert_eq!(Limiter::new(10, 3).client(Some(peer), &spoofed), Some(peer));
        assert_eq!(
            Limiter::new(10, 1).client(Some(peer), &xff("not an ip")),
            Some(peer)
        );
        assert_eq!(
            Limiter::new(10, 1).client(Some(peer), &HeaderMap::new()),
            Some(peer)
        );
    }

    #[test]
    fn each_client_has_its_own_bucket() {
        let l = Limiter::new(3, 0);
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        for _ in 0..3 {
            l.check(a).unwrap();
        }
        let e = l.check(a).unwrap_err();
        assert_eq!((e.status, e.code), (429, "rate_limited"));
        assert!(
            (1..=20).contains(&e.retry_after.unwrap()),
            "{:?}",
            e.retry_after
        );
        l.check(b).expect("another client is not limited");
        assert!(Limiter::new(0, 0).check(a).is_ok(), "0 is off");
    }

    #[test]
    fn the_budget_holds_for_the_day_and_resets_at_midnight() {
        let b = Budget::new(2);
        let day = 20_000 * DAY;
        let now = day + 23 * 3600;
        assert_eq!(b.left(now), Some(2));
        b.take(now).unwrap();
        b.take(now + 1).unwrap();
        let e = b.take(now + 2).unwrap_err();
        assert_eq!((e.status, e.code), (429, "daily_budget_exhausted"));
        assert_eq!(e.retry_after, Some(3600 - 2), "until midnight UTC");
        assert_eq!(b.left(now), Some(0));
        b.take(day + DAY).expect("a new day");
        assert_eq!(b.left(day + DAY), Some(1));
        assert_eq!(Budget::new(0).left(now), None);
        assert!(Budget::new(0).take(now).is_ok());
    }
}
