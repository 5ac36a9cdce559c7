//! How `remove`'s stages share the cores: the model's thread is one of rayon's workers, it
//! helps the other stages' parallel work instead of sleeping while it waits, and the finishing
//! stage keeps to one core while one core keeps up with the model.
//!
//! Why: rayon work started from a thread outside the pool is queued for the pool's threads
//! while the caller sleeps on a latch, so every parallel step of the model (a few per layer)
//! and of the matting (one per solver iteration) cost two sleeps and two wake-ups, and both
//! stages' steps waited in one queue. On 12 noisy 1024×683 photos (AMD EPYC Zen 4, 2 cores,
//! default output, three alternating runs of each binary): 3.54–4.40 → 3.33–3.67 s wall,
//! 8,700–8,850 → 1,420–1,680 voluntary and 12,500–22,000 → 1,500–1,730 involuntary context
//! switches, 0.38–0.49 → 0.25–0.32 s system time. On 3 of 12 MP, where the finishing stage is
//! the longer one and keeps all cores, 4.07–4.47 → 4.20–4.24 s (the README has the runs).

use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::Duration;

/// Make the calling thread worker 0 of rayon's global pool (the pool then starts one thread
/// fewer), so the parallel work it starts runs on it and is shared by work stealing. Call it
/// first, on the thread that will run the model; where the pool already existed this thread
/// stays outside it and [`Wait`] blocks as the channels do.
pub fn join_the_pool() {
    // An error means the pool was made before: nothing to undo.
    let _ = rayon::ThreadPoolBuilder::new()
        .use_current_thread()
        .build_global();
}

/// Waiting on the pipeline's channels. On a pool worker it runs the pool's queued work
/// meanwhile (the other stages' parallel steps), and naps from 20 µs up to 1 ms while there is
/// none; elsewhere it blocks as the channels do.
#[derive(Clone, Copy)]
pub struct Wait {
    helps: bool,
}

impl Wait {
    pub fn here() -> Self {
        Self {
            helps: rayon::current_thread_index().is_some(),
        }
    }

    /// The next message, `None` once every sender is gone.
    pub fn recv<T>(self, rx: &Receiver<T>) -> Option<T> {
        if !self.helps {
            return rx.recv().ok();
        }
        self.poll(|| match rx.try_recv() {
            Ok(v) => Some(Some(v)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(None),
        })
    }

    /// Send `v`; `false` once the receiver is gone.
    pub fn send<T>(self, tx: &SyncSender<T>, v: T) -> bool {
        if !self.helps {
            return tx.send(v).is_ok();
        }
        let mut v = Some(v);
        self.poll(|| match tx.try_send(v.take()?) {
            Ok(()) => Some(true),
            Err(TrySendError::Full(back)) => {
                v = Some(back);
                None
            }
            Err(TrySendError::Disconnected(_)) => Some(false),
        })
    }

    /// Until `done()`; it returns at once where this thread does not help, as a scoped thread
    /// is then joined anyway.
    pub fn until(self, done: impl Fn() -> bool) {
        if self.helps {
            self.poll(|| done().then_some(()));
        }
    }

    fn poll<T>(self, mut ready: impl FnMut() -> Option<T>) -> T {
        const SHORTEST: Duration = Duration::from_micros(20);
        let mut nap = SHORTEST;
        loop {
            if let Some(v) = ready() {
                return v;
            }
            if rayon::yield_now() == Some(rayon::Yield::Executed) {
                nap = SHORTEST;
            } else {
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(1));
            }
        }
    }
}

/// Where the finishing stage (refine, encode, write) runs its parallel work: on all cores for
/// the first and the last photo and while it is much the slower stage, otherwise on one core
/// of its own, so the model's thread and the rest of the pool have the other core and neither
/// stage's parallel steps wait in the other's queue.
pub struct FinishCores {
    alone: Option<rayon::ThreadPool>,
    use_alone: bool,
}

/// The finishing stage keeps to one core while it took at most this many times the model's
/// stage. Measured on the two sizes `scripts/bench-u2netp` runs (AMD EPYC Zen 4, 2 cores,
/// U²-Netp): 1024×683 photos finish in 0.9–1.3× the model's time, alone or not, and one core
/// each is the faster pipeline; 12 MP ones in 3.5–6×, where the finishing stage needs both
/// cores.
const ALONE_WHILE_WITHIN: f64 = 2.0;

impl FinishCores {
    pub fn new() -> Self {
        let alone = (rayon::current_num_threads() > 1)
            .then(|| rayon::ThreadPoolBuilder::new().num_threads(1).build().ok())
            .flatten();
        Self {
            alone,
            use_alone: false,
        }
    }

    /// Run one photo's finishing `work`; `last` when no photo follows it.
    pub fn run<R: Send>(&self, last: bool, work: impl FnOnce() -> R + Send) -> R {
        match &self.alone {
            Some(pool) if self.use_alone && !last => pool.install(work),
            _ => work(),
        }
    }

    /// After a photo: its model's and finishing stages' times (ms).
    pub fn learn(&mut self, model_ms: f64, finish_ms: f64) {
        self.use_alone = model_ms > 0.0 && finish_ms <= ALONE_WHILE_WITHIN * model_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::sync_channel;

    /// What the pipeline needs of [`Wait`]: every message in order, then `None`; a send fails
    /// once the receiver is gone.
    fn channel_round_trip(wait: Wait) {
        let (tx, rx) = sync_channel::<u32>(1);
        let producer = std::thread::spawn(move || {
            for i in 0..5 {
                std::thread::sleep(Duration::from_millis(2));
                tx.send(i).unwrap();
            }
        });
        let got: Vec<u32> = std::iter::from_fn(|| wait.recv(&rx)).collect();
        assert_eq!(got, [0, 1, 2, 3, 4]);
        producer.join().unwrap();

        let (tx, rx) = sync_channel::<u32>(1);
        assert!(wait.send(&tx, 7));
        let consumer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            [rx.recv().unwrap(), rx.recv().unwrap()]
        });
        // The channel is full until the consumer takes 7; the receiver is gone after 8.
        assert!(wait.send(&tx, 8));
        assert_eq!(consumer.join().unwrap(), [7, 8]);
        assert!(!wait.send(&tx, 9), "no receiver any more");
    }

    #[test]
    fn waiting_outside_a_pool_blocks_as_the_channels_do() {
        let wait = Wait::here();
        assert!(!wait.helps);
        channel_round_trip(wait);
    }

    #[test]
    fn waiting_on_a_pool_worker_gets_the_same_messages_and_runs_queued_work() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        pool.install(|| {
            let wait = Wait::here();
            assert!(wait.helps);
            channel_round_trip(wait);
            // Work queued in the pool runs while this, its only thread, waits.
            let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = ran.clone();
            rayon::spawn(move || flag.store(true, std::sync::atomic::Ordering::Release));
            wait.until(|| ran.load(std::sync::atomic::Ordering::Acquire));
        });
    }

    #[test]
    fn finishing_keeps_to_one_core_only_while_it_keeps_up_with_the_model() {
        let mut cores = FinishCores::new();
        let on = |cores: &FinishCores, last| cores.run(last, rayon::current_num_threads);
        let all = rayon::current_num_threads();
        assert_eq!(on(&cores, false), all, "the first photo has all cores");
        cores.learn(250.0, 300.0);
        if all > 1 {
            assert_eq!(on(&cores, false), 1, "a photo that keeps up goes alone");
        }
        assert_eq!(on(&cores, true), all, "the last photo has all cores");
        cores.learn(300.0, 1800.0);
        assert_eq!(
            on(&cores, false),
            all,
            "a photo that holds the model up has all cores"
        );
    }
}
