//! Which secrets reached which process, and through whom: the agent's copy of the kernel's
//! taint map, with every secret a process touched (the kernel keeps only the first).

use std::collections::HashMap;

use sensor_common::Taint;

/// One secret reaching one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Touch {
    pub secret_id: u32,
    /// The process that opened the secret: the tainted process itself or an ancestor.
    pub origin_pid: u32,
}

/// Tainted processes by pid.
#[derive(Debug, Default)]
pub struct TaintTable {
    by_pid: HashMap<u32, Vec<Touch>>,
}

impl TaintTable {
    /// `pid` opened secret `secret_id` itself.
    pub fn secret_read(&mut self, pid: u32, secret_id: u32) {
        let touches = self.by_pid.entry(pid).or_default();
        if !touches.iter().any(|t| t.secret_id == secret_id) {
            touches.push(Touch { secret_id, origin_pid: pid });
        }
    }

    /// A child inherits everything its parent had touched.
    pub fn fork(&mut self, parent: u32, child: u32) {
        match self.by_pid.get(&parent).cloned() {
            Some(touches) => self.by_pid.insert(child, touches),
            None => self.by_pid.remove(&child),
        };
    }

    pub fn exit(&mut self, pid: u32) {
        self.by_pid.remove(&pid);
    }

    /// What reached `pid`; the kernel's record stands in when ours is missing (lost events).
    pub fn touches(&self, pid: u32, kernel: &Taint) -> Vec<Touch> {
        self.by_pid
            .get(&pid)
            .cloned()
            .unwrap_or_else(|| vec![Touch { secret_id: kernel.secret_id, origin_pid: kernel.origin_pid }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_KERNEL_TAINT: Taint = Taint { secret_id: 9, origin_pid: 9, since_ns: 0 };

    #[test]
    fn children_inherit_every_secret_with_its_origin() {
        let mut table = TaintTable::default();
        table.secret_read(10, 0);
        table.secret_read(10, 1);
        table.secret_read(10, 0);
        table.fork(10, 11);
        let expected = [Touch { secret_id: 0, origin_pid: 10 }, Touch { secret_id: 1, origin_pid: 10 }];
        assert_eq!(table.touches(11, &NO_KERNEL_TAINT), expected);
    }

    #[test]
    fn a_reused_pid_starts_clean() {
        let mut table = TaintTable::default();
        table.secret_read(10, 0);
        table.exit(10);
        table.fork(1, 10);
        assert_eq!(table.touches(10, &NO_KERNEL_TAINT), [Touch { secret_id: 9, origin_pid: 9 }]);
    }
}
