//! Unique MCS category pairs (`s0:cX,cY`) so each container's SELinux label differs from every
//! other's, as kosd hands them out.

use std::collections::HashSet;

use super::LabelError;

/// Hands out distinct category pairs `cX,cY` with `X < Y < categories`.
#[derive(Debug, Clone)]
pub struct Allocator {
    categories: u16,
    used: HashSet<(u16, u16)>,
}

impl Default for Allocator {
    fn default() -> Self {
        Allocator::new(super::selinux::MAX_CATEGORY + 1)
    }
}

fn pair_count(n: u16) -> usize {
    let n = n as usize;
    n * n.saturating_sub(1) / 2
}

/// The `k`-th pair in lexicographic order.
fn nth_pair(n: u16, mut k: usize) -> (u16, u16) {
    let n = n as usize;
    for x in 0..n {
        let row = n - x - 1;
        if k < row {
            return (x as u16, (x + 1 + k) as u16);
        }
        k -= row;
    }
    (0, 1)
}

fn random_index(bound: usize) -> usize {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most b.len() bytes into b.
    let r = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    let v = if r == 8 {
        u64::from_ne_bytes(b)
    } else {
        // Uniqueness, not unpredictability, is what matters here.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    };
    (v % bound as u64) as usize
}

fn format_level(p: (u16, u16)) -> String {
    format!("s0:c{},c{}", p.0, p.1)
}

impl Allocator {
    /// An allocator over categories `c0..c{categories-1}` (at least 2).
    pub fn new(categories: u16) -> Allocator {
        Allocator {
            categories: categories.max(2),
            used: HashSet::new(),
        }
    }

    /// Parse a level of the form `s0:cX,cY` into its pair.
    pub fn parse_level(level: &str) -> Option<(u16, u16)> {
        let cats = level.strip_prefix("s0:")?;
        let (a, b) = cats.split_once(',')?;
        let a: u16 = a.strip_prefix('c')?.parse().ok()?;
        let b: u16 = b.strip_prefix('c')?.parse().ok()?;
        Some(if a < b { (a, b) } else { (b, a) }).filter(|(a, b)| a != b)
    }

    /// A fresh level `s0:cX,cY` not handed out before (and not reserved).
    pub fn allocate(&mut self) -> Result<String, LabelError> {
        let total = pair_count(self.categories);
        if self.used.len() >= total {
            return Err(LabelError::Exhausted(total));
        }
        let start = random_index(total);
        for i in 0..total {
            let p = nth_pair(self.categories, (start + i) % total);
            if self.used.insert(p) {
                return Ok(format_level(p));
            }
        }
        Err(LabelError::Exhausted(total))
    }

    /// Mark a level as in use (e.g. containers found at daemon start). Returns false if it was
    /// already taken or is not an `s0:cX,cY` level.
    pub fn reserve(&mut self, level: &str) -> bool {
        match Allocator::parse_level(level) {
            Some(p) if p.1 < self.categories => self.used.insert(p),
            _ => false,
        }
    }

    /// Return a level to the pool.
    pub fn release(&mut self, level: &str) {
        if let Some(p) = Allocator::parse_level(level) {
            self.used.remove(&p);
        }
    }

    /// Levels currently handed out.
    pub fn in_use(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_enumerate_exactly_once() {
        let n = 6;
        let all: HashSet<_> = (0..pair_count(n)).map(|k| nth_pair(n, k)).collect();
        assert_eq!(all.len(), 15);
        assert!(all.iter().all(|(a, b)| a < b && *b < n));
    }

    #[test]
    fn allocations_are_unique_until_exhausted() {
        let mut a = Allocator::new(5);
        let mut seen = HashSet::new();
        for _ in 0..10 {
            let l = a.allocate().expect("free pair");
            assert!(super::super::selinux::validate_level(&l).is_ok(), "{l}");
            assert!(seen.insert(l));
        }
        let e = a.allocate().expect_err("exhausted");
        assert!(e.to_string().contains("10 pairs"), "{e}");
        let one = seen.iter().next().cloned().expect("one");
        a.release(&one);
        assert_eq!(a.allocate().expect("freed"), one);
    }

    #[test]
    fn reserve_blocks_reuse() {
        let mut a = Allocator::new(3);
        assert!(a.reserve("s0:c0,c1"));
        assert!(!a.reserve("s0:c1,c0"), "same pair either order");
        assert!(a.reserve("s0:c0,c2"));
        assert!(!a.reserve("s0:c0,c9"), "outside the range");
        assert!(!a.reserve("s0:c1"));
        assert_eq!(a.allocate().expect("last pair"), "s0:c1,c2");
        assert_eq!(a.in_use(), 3);
    }

    #[test]
    fn default_range_is_the_mcs_policy() {
        let mut a = Allocator::default();
        let l = a.allocate().expect("pair");
        let (x, y) = Allocator::parse_level(&l).expect("parse");
        assert!(x < y && y <= 1023);
    }
}
