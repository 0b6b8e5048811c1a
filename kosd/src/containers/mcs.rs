//! Per-container SELinux MCS levels (`s0:cX,cY`), as dockerd and podman allocate them:
//! a random pair of distinct categories below 1024, never one that another container
//! holds. A pair is held by the container record that carries it (so removing the record
//! releases it) and, while a create is still running, by its [`Reservation`].

use std::collections::HashSet;
use std::sync::Mutex;

use super::record::Container;
use crate::engine::Engine;
use crate::error::{ApiError, Result};

/// Categories c0..c1023, as container-selinux's policy and go-selinux use.
const CATEGORIES: u16 = 1024;
/// Random draws before falling back to a scan (only a nearly full space needs it).
const DRAWS: usize = 64;

/// An unordered pair of distinct categories, kept low first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pair(u16, u16);

impl Pair {
    pub fn new(a: u16, b: u16) -> Option<Pair> {
        (a != b && a < CATEGORIES && b < CATEGORIES).then(|| Pair(a.min(b), a.max(b)))
    }

    /// `s0:cA,cB`.
    pub fn level(&self) -> String {
        format!("s0:c{},c{}", self.0, self.1)
    }

    /// The pair of a label or level ending in `s0:cA,cB`; None for any other level.
    pub fn from_label(label: &str) -> Option<Pair> {
        let level = label
            .rsplit_once(":s0:")
            .map(|(_, l)| l)
            .or_else(|| label.strip_prefix("s0:"))?;
        let (a, b) = level.split_once(',')?;
        let num = |s: &str| s.strip_prefix('c')?.parse::<u16>().ok();
        Pair::new(num(a)?, num(b)?)
    }
}

/// Picks a pair not in `taken`: random draws first, then the first free one in order.
pub fn pick(taken: &HashSet<Pair>, mut rand: impl FnMut() -> u32) -> Option<Pair> {
    for _ in 0..DRAWS {
        let r = rand();
        let a = (r & 0xffff) as u16 % CATEGORIES;
        let b = (r >> 16) as u16 % CATEGORIES;
        if let Some(p) = Pair::new(a, b).filter(|p| !taken.contains(p)) {
            return Some(p);
        }
    }
    (0..CATEGORIES)
        .flat_map(|a| ((a + 1)..CATEGORIES).map(move |b| Pair(a, b)))
        .find(|p| !taken.contains(p))
}

/// Pairs handed out to creates that have not saved their record yet.
static IN_FLIGHT: Mutex<Option<HashSet<Pair>>> = Mutex::new(None);

/// Holds a pair until the create that took it has saved its record (or failed).
#[derive(Debug)]
pub struct Reservation(Pair);

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut g = IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = g.as_mut() {
            s.remove(&self.0);
        }
    }
}

/// A container's labels (empty when SELinux is off or the labels are disabled).
#[derive(Debug, Default)]
pub struct Labels {
    pub process: String,
    pub mount: String,
    pub _reservation: Option<Reservation>,
}

fn random_u32() -> Result<u32> {
    let mut b = [0u8; 4];
    // SAFETY: getrandom writes at most b.len() bytes into b. Four bytes from the kernel's
    // initialised pool come whole (no short read below 256 bytes).
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        return Err(ApiError::internal(
            "drawing an MCS category pair",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(u32::from_ne_bytes(b))
}

/// The labels of a new container: with SELinux enabled, `--security-opt label=...` parts
/// over container-selinux's defaults, and a level of its own unless one was asked for.
pub fn labels_for(
    e: &Engine,
    selinux_enabled: bool,
    sec: &super::spec::SecurityOpts,
) -> Result<Labels> {
    if !selinux_enabled || sec.label_disable {
        return Ok(Labels::default());
    }
    let part = |k: &str, d: &'static str| sec.label_parts.get(k).cloned().unwrap_or(d.into());
    let (level, reservation) = match sec.label_parts.get("level") {
        Some(l) => (l.clone(), None),
        None => {
            let held: Vec<Pair> = super::all(e)
                .iter()
                .filter_map(|c: &Container| Pair::from_label(&c.mount_label))
                .collect();
            let mut g = IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner());
            let in_flight = g.get_or_insert_with(HashSet::new);
            let mut taken: HashSet<Pair> = held.into_iter().collect();
            taken.extend(in_flight.iter().copied());
            let mut err = None;
            let pair = pick(&taken, || {
                random_u32().unwrap_or_else(|e| {
                    err = Some(e);
                    0
                })
            });
            if let Some(e) = err {
                return Err(e);
            }
            let pair = pair.ok_or_else(|| {
                ApiError::Conflict("every SELinux MCS category pair is in use".into())
            })?;
            in_flight.insert(pair);
            (pair.level(), Some(Reservation(pair)))
        }
    };
    Ok(Labels {
        process: format!(
            "{}:{}:{}:{level}",
            part("user", "system_u"),
            part("role", "system_r"),
            part("type", "container_t")
        ),
        mount: format!(
            "system_u:object_r:{}:{level}",
            part("filetype", "container_file_t")
        ),
        _reservation: reservation,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn levels_format_and_parse() {
        let p = Pair::new(700, 12).unwrap();
        assert_eq!(p.level(), "s0:c12,c700");
        assert_eq!(Pair::from_label("s0:c12,c700"), Some(p));
        assert_eq!(
            Pair::from_label("system_u:object_r:container_file_t:s0:c700,c12"),
            Some(p)
        );
        for bad in ["", "s0", "s0:c1,c1", "s0:c1,c1024", "s0:c1", "x:s0:cA,c2"] {
            assert_eq!(Pair::from_label(bad), None, "{bad}");
        }
        assert!(Pair::new(3, 3).is_none());
    }

    #[test]
    fn picks_are_unique_until_the_space_is_full() {
        // A poor generator (always the same draw) still yields distinct pairs.
        let mut taken = HashSet::new();
        for _ in 0..2000 {
            let p = pick(&taken, || 0x0005_0007).unwrap();
            assert!(taken.insert(p), "{p:?} handed out twice");
        }
        // A real one: draws avoid what is taken.
        let mut seed = 0x1234_5678u32;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for _ in 0..5000 {
            let p = pick(&taken, &mut rnd).unwrap();
            assert!(taken.insert(p));
        }
        // Every pair taken: none left.
        let all: HashSet<Pair> = (0..CATEGORIES)
            .flat_map(|a| ((a + 1)..CATEGORIES).map(move |b| Pair(a, b)))
            .collect();
        assert_eq!(all.len(), 1024 * 1023 / 2);
        assert_eq!(pick(&all, rnd), None);
    }

    #[test]
    fn reservations_are_released_on_drop() {
        let p = Pair(1, 2);
        IN_FLIGHT
            .lock()
            .unwrap()
            .get_or_insert_with(HashSet::new)
            .insert(p);
        drop(Reservation(p));
        assert!(!IN_FLIGHT.lock().unwrap().as_ref().unwrap().contains(&p));
    }
}
