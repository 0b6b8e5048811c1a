//! Gives memory back when the shim goes idle. A shim spends nearly all its life waiting in
//! poll(), yet handling Create and Start runs most of its code, and the kernel's fault-around
//! maps the binary in 64 KiB windows: without this, an idle shim keeps its whole text and
//! rodata mapped (about 0.6 MB that no other process shares when it is the only shim).
//! Dropping those mappings costs nothing: the pages stay in the page cache, and the next
//! request faults back what it runs (minor faults, no I/O).

use std::ffi::c_void;

/// The read-only (never written: no text relocations) pages of the shim's own executable.
pub struct Idle {
    ranges: Vec<(usize, usize)>,
}

impl Idle {
    pub fn new() -> Idle {
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        // SAFETY: the callback only reads the program headers it is handed, and stops after
        // the first object, which glibc guarantees is the main program.
        unsafe {
            libc::dl_iterate_phdr(
                Some(main_program_segments),
                (&mut ranges as *mut Vec<(usize, usize)>).cast::<c_void>(),
            )
        };
        Idle { ranges }
    }

    /// Trims the heap and unmaps the executable's read-only pages (they fault back in from
    /// the page cache when next used).
    pub fn release(&self) {
        // SAFETY: malloc_trim only walks and trims the allocator's own free lists.
        unsafe { libc::malloc_trim(0) };
        for &(start, len) in &self.ranges {
            // SAFETY: the range is whole pages of a private, read-only, file-backed mapping
            // of the executable: dropping them loses nothing, the next access reads the same
            // bytes back from the file.
            unsafe { libc::madvise(start as *mut c_void, len, libc::MADV_DONTNEED) };
        }
    }
}

/// dl_iterate_phdr callback: the main program's non-writable PT_LOAD segments, shrunk to
/// whole pages that no writable segment or RELRO region (written by the dynamic linker at
/// load time, so private copies) touches.
unsafe extern "C" fn main_program_segments(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut c_void,
) -> libc::c_int {
    // SAFETY: glibc hands a valid dl_phdr_info, and `data` is the Vec passed by Idle::new.
    let (info, out) = unsafe { (&*info, &mut *data.cast::<Vec<(usize, usize)>>()) };
    if info.dlpi_phdr.is_null() {
        return 1;
    }
    // SAFETY: dlpi_phdr points at dlpi_phnum program headers of a loaded object.
    let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    let base = info.dlpi_addr as usize;
    let segments: Vec<Segment> = phdrs
        .iter()
        .map(|p| Segment {
            kind: p.p_type,
            writable: p.p_flags & libc::PF_W != 0,
            start: base + p.p_vaddr as usize,
            len: p.p_memsz as usize,
        })
        .collect();
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    out.extend(read_only_pages(&segments, page));
    1
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    kind: u32,
    writable: bool,
    start: usize,
    len: usize,
}

/// Whole pages of read-only loadable segments, as (start, length), leaving out any page that
/// also holds part of a writable segment or of the RELRO region.
fn read_only_pages(segments: &[Segment], page: usize) -> Vec<(usize, usize)> {
    let down = |a: usize| a / page * page;
    let up = |a: usize| a.div_ceil(page) * page;
    let written: Vec<(usize, usize)> = segments
        .iter()
        .filter(|s| (s.kind == libc::PT_LOAD && s.writable) || s.kind == libc::PT_GNU_RELRO)
        .map(|s| (down(s.start), up(s.start + s.len)))
        .collect();
    segments
        .iter()
        .filter(|s| s.kind == libc::PT_LOAD && !s.writable && s.len > 0)
        .filter_map(|s| {
            let mut start = up(s.start);
            let mut end = down(s.start + s.len);
            for &(ws, we) in &written {
                if ws < end && we > start {
                    // Overlap: keep the part before the written pages, if any.
                    if ws > start {
                        end = ws;
                    } else {
                        start = we.max(start);
                    }
                }
            }
            (end > start).then(|| (start, end - start))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(kind: u32, writable: bool, start: usize, len: usize) -> Segment {
        Segment {
            kind,
            writable,
            start,
            len,
        }
    }

    #[test]
    fn read_only_segments_shrink_to_whole_pages() {
        // The layout lld gives the shim: rodata, text, RELRO + data, data.
        let segs = [
            seg(libc::PT_LOAD, false, 0x0, 0x309e8),
            seg(libc::PT_LOAD, false, 0x319f0, 0x99c50),
            seg(libc::PT_LOAD, true, 0xcc640, 0x59c0),
            seg(libc::PT_GNU_RELRO, false, 0xcc640, 0x59c0),
            seg(libc::PT_LOAD, true, 0xd26d8, 0xaa0),
        ];
        assert_eq!(
            read_only_pages(&segs, 0x1000),
            vec![(0x0, 0x30000), (0x32000, 0xcb000 - 0x32000)]
        );
    }

    #[test]
    fn pages_shared_with_written_data_are_kept() {
        let segs = [
            seg(libc::PT_LOAD, false, 0x1000, 0x5000),
            seg(libc::PT_GNU_RELRO, false, 0x4800, 0x100),
            seg(libc::PT_LOAD, true, 0x6000, 0x1000),
        ];
        assert_eq!(read_only_pages(&segs, 0x1000), vec![(0x1000, 0x3000)]);
        // A read-only segment inside written pages leaves nothing.
        let segs = [
            seg(libc::PT_LOAD, false, 0x2000, 0x800),
            seg(libc::PT_LOAD, true, 0x1000, 0x3000),
        ];
        assert!(read_only_pages(&segs, 0x1000).is_empty());
    }

    #[test]
    fn release_keeps_the_program_working() {
        let idle = Idle::new();
        assert!(!idle.ranges.is_empty(), "no read-only segments found");
        // Every range lies in a read-only mapping of this executable.
        let exe = std::fs::read_link("/proc/self/exe").expect("/proc/self/exe");
        let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
        for &(start, len) in &idle.ranges {
            let inside = maps.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let Some((a, b)) = f[0].split_once('-') else {
                    return false;
                };
                let (a, b) = (
                    usize::from_str_radix(a, 16).unwrap_or(0),
                    usize::from_str_radix(b, 16).unwrap_or(0),
                );
                a <= start
                    && start + len <= b
                    && !f[1].contains('w')
                    && f.get(5) == Some(&exe.to_str().unwrap_or("?"))
            });
            assert!(
                inside,
                "{start:#x}+{len:#x} is not a read-only mapping of {exe:?}:\n{maps}"
            );
        }
        idle.release();
        // Code and constants fault back in from the file.
        let s: String = ["still", "running"].join(" ");
        assert_eq!(s, "still running");
    }
}
