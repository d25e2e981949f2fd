//! Which secrets reached which process, and how: the agent's copy of the kernel's taint map,
//! with every secret a process took in (the kernel keeps only the first).

use std::collections::HashMap;

use sensor_common::{FileId, Taint};

/// One secret reaching one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Touch {
    pub secret_id: u32,
    /// The process that opened the secret: the tainted process itself or another one.
    pub origin_pid: u32,
    /// Its start time (0: unknown).
    pub origin_start_ns: u64,
    /// When the secret was last taken in (kernel monotonic ns): the taint window counts from here.
    pub read_ns: u64,
    /// When the process took it in, or its ancestor did for an inherited one (kernel ns).
    pub acquired_ns: u64,
    /// One of `sensor_common::via`, and the derived file, pipe or socket it came through.
    pub via_kind: u32,
    pub via: FileId,
}

impl From<&Taint> for Touch {
    fn from(taint: &Taint) -> Self {
        Self {
            secret_id: taint.secret_id,
            origin_pid: taint.origin_pid,
            origin_start_ns: taint.origin_start_ns,
            read_ns: taint.read_ns,
            acquired_ns: taint.acquired_ns,
            via_kind: taint.via_kind,
            via: taint.via,
        }
    }
}

/// Tainted processes by pid.
#[derive(Debug, Default)]
pub struct TaintTable {
    by_pid: HashMap<u32, Vec<Touch>>,
    /// Calls of [`TaintTable::acquire`] so far.
    acquired: u64,
    /// Taint older than this no longer counts (0: the process's lifetime).
    window_ns: u64,
}

impl TaintTable {
    pub fn new(window_ns: u64) -> Self {
        Self { by_pid: HashMap::new(), acquired: 0, window_ns }
    }

    /// `pid` took in a secret: the first route per secret is kept, and a later take-in of
    /// the same secret renews its window.
    pub fn acquire(&mut self, pid: u32, touch: Touch) {
        self.acquired += 1;
        let touches = self.by_pid.entry(pid).or_default();
        match touches.iter_mut().find(|t| t.secret_id == touch.secret_id) {
            Some(known) => known.read_ns = known.read_ns.max(touch.read_ns),
            None => touches.push(touch),
        }
    }

    /// A child inherits everything its parent had taken in.
    pub fn fork(&mut self, parent: u32, child: u32) {
        match self.by_pid.get(&parent).cloned() {
            Some(touches) => self.by_pid.insert(child, touches),
            None => self.by_pid.remove(&child),
        };
    }

    pub fn exit(&mut self, pid: u32) {
        self.by_pid.remove(&pid);
    }

    /// `pid` became a trusted service's process at `since_ns`: what it took in from then on
    /// was the service's own work. What it carried from before stays.
    pub fn forget_taken_since(&mut self, pid: u32, since_ns: u64) {
        if let Some(touches) = self.by_pid.get_mut(&pid) {
            touches.retain(|t| t.acquired_ns < since_ns);
            if touches.is_empty() {
                self.by_pid.remove(&pid);
            }
        }
    }

    pub fn acquired(&self) -> u64 {
        self.acquired
    }

    pub fn is_empty(&self) -> bool {
        self.by_pid.is_empty()
    }

    /// Each tainted process with the first secret that reached it and still counts at
    /// `now_ns`.
    pub fn live(&self, now_ns: u64) -> impl Iterator<Item = (u32, &Touch)> {
        let live =
            move |t: &&Touch| self.window_ns == 0 || now_ns.saturating_sub(t.read_ns) <= self.window_ns;
        self.by_pid.iter().filter_map(move |(&pid, touches)| Some((pid, touches.iter().find(live)?)))
    }

    /// Whether `pid` took in any secret.
    pub fn holds(&self, pid: u32) -> bool {
        self.by_pid.get(&pid).is_some_and(|touches| !touches.is_empty())
    }

    /// What reached `pid` and still counts at `now_ns`. The kernel only sends a connect
    /// record for a live taint: its record stands in when ours is missing or has expired
    /// (a renewal's record lost to a full ring buffer).
    pub fn touches(&self, pid: u32, kernel: &Taint, now_ns: u64) -> Vec<Touch> {
        let live = |t: &Touch| self.window_ns == 0 || now_ns.saturating_sub(t.read_ns) <= self.window_ns;
        let ours: Vec<Touch> = self
            .by_pid
            .get(&pid)
            .map(|touches| touches.iter().copied().filter(live).collect())
            .unwrap_or_default();
        if ours.is_empty() {
            vec![Touch::from(kernel)]
        } else {
            ours
        }
    }
}

#[cfg(test)]
mod tests {
    use sensor_common::via;

    use super::*;

    fn touch(secret_id: u32, origin_pid: u32, read_ns: u64) -> Touch {
        Touch {
            secret_id,
            origin_pid,
            origin_start_ns: 0,
            read_ns,
            acquired_ns: read_ns,
            via_kind: via::DIRECT,
            via: FileId::default(),
        }
    }

    const KERNEL: Taint = Taint {
        secret_id: 9,
        origin_pid: 9,
        read_ns: 0,
        acquired_ns: 0,
        via_kind: 0,
        via_generation: 0,
        via: FileId::new(0, 0),
        origin_start_ns: 0,
    };

    #[test]
    fn children_inherit_every_secret_with_its_origin() {
        let mut table = TaintTable::new(0);
        table.acquire(10, touch(0, 10, 1));
        table.acquire(10, touch(1, 10, 2));
        table.acquire(10, touch(0, 10, 3));
        table.fork(10, 11);
        let renewed = Touch { read_ns: 3, ..touch(0, 10, 1) };
        assert_eq!(table.touches(11, &KERNEL, 5), [renewed, touch(1, 10, 2)]);
    }

    #[test]
    fn a_reused_pid_starts_clean() {
        let mut table = TaintTable::new(0);
        table.acquire(10, touch(0, 10, 1));
        table.exit(10);
        table.fork(1, 10);
        assert_eq!(table.touches(10, &KERNEL, 5), [Touch::from(&KERNEL)]);
    }

    #[test]
    fn the_window_drops_old_touches() {
        let mut table = TaintTable::new(1_000);
        table.acquire(10, touch(0, 10, 100));
        table.acquire(10, touch(1, 10, 900));
        assert_eq!(table.touches(10, &KERNEL, 1_500), [touch(1, 10, 900)]);
        // Ours expired, the kernel says it is live (a renewal we did not hear of).
        assert_eq!(table.touches(10, &KERNEL, 3_000), [Touch::from(&KERNEL)]);
    }

    #[test]
    fn a_new_take_in_renews_the_window_and_keeps_the_first_route() {
        let mut table = TaintTable::new(1_000);
        table.acquire(10, touch(0, 10, 100));
        table.acquire(10, touch(0, 99, 2_500));
        assert_eq!(table.touches(10, &KERNEL, 3_000), [Touch { read_ns: 2_500, ..touch(0, 10, 100) }]);
    }

    #[test]
    fn becoming_trusted_keeps_what_came_before() {
        let mut table = TaintTable::new(0);
        table.acquire(10, touch(0, 10, 100));
        table.acquire(10, touch(1, 10, 300));
        table.forget_taken_since(10, 200);
        assert_eq!(table.touches(10, &KERNEL, 400), [touch(0, 10, 100)]);
        table.forget_taken_since(10, 50);
        assert!(!table.holds(10));
    }
}
