//! Splits a byte stream into log records: whole lines, and pieces of lines longer than the
//! bound (marked partial), so nothing is ever truncated and no record grows without limit.

/// Docker and the CRI both split at 16 KiB.
pub const MAX_LINE: usize = 16 * 1024;

pub struct LineSplitter {
    buf: Vec<u8>,
    max: usize,
}

/// A record: the bytes without the newline, and whether the line continues in the next one.
pub struct Record<'a> {
    pub data: &'a [u8],
    pub partial: bool,
}

impl LineSplitter {
    pub fn new(max: usize) -> LineSplitter {
        LineSplitter {
            buf: Vec::new(),
            max: max.max(4),
        }
    }

    /// Feeds bytes; calls `emit` for every complete record.
    pub fn feed(&mut self, mut data: &[u8], emit: &mut dyn FnMut(Record<'_>)) {
        while !data.is_empty() {
            let room = self.max - self.buf.len();
            match data.iter().take(room).position(|&b| b == b'\n') {
                Some(i) => {
                    self.buf.extend_from_slice(&data[..i]);
                    emit(Record {
                        data: &self.buf,
                        partial: false,
                    });
                    self.buf.clear();
                    data = &data[i + 1..];
                }
                None => {
                    let take = room.min(data.len());
                    self.buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.buf.len() >= self.max {
                        // Cut at a UTF-8 character boundary so no character is split across
                        // two records; what is held back starts the next record.
                        let cut = utf8_cut(&self.buf);
                        emit(Record {
                            data: &self.buf[..cut],
                            partial: true,
                        });
                        self.buf.drain(..cut);
                    }
                }
            }
        }
        if self.buf.capacity() > self.max * 2 {
            self.buf.shrink_to(self.max);
        }
    }

    /// Hands over what is held of an unfinished line as a partial record (a terminal's
    /// prompt must show before its line ends).
    pub fn flush(&mut self, emit: &mut dyn FnMut(Record<'_>)) {
        if !self.buf.is_empty() {
            let cut = utf8_cut(&self.buf);
            if cut > 0 {
                emit(Record {
                    data: &self.buf[..cut],
                    partial: true,
                });
                self.buf.drain(..cut);
            }
        }
    }

    /// End of stream: whatever is left is a last line without its newline.
    pub fn finish(&mut self, emit: &mut dyn FnMut(Record<'_>)) {
        if !self.buf.is_empty() {
            emit(Record {
                data: &self.buf,
                partial: false,
            });
            self.buf = Vec::new();
        }
    }
}

/// The longest prefix of `b` that does not end inside a multi-byte UTF-8 sequence
/// (never shorter than len-3; invalid bytes are not held back).
fn utf8_cut(b: &[u8]) -> usize {
    let n = b.len();
    for back in 1..=3.min(n) {
        let c = b[n - back];
        if c & 0xC0 == 0x80 {
            continue; // continuation byte: keep looking for the lead byte
        }
        let need = if c >= 0xF0 {
            4
        } else if c >= 0xE0 {
            3
        } else if c >= 0xC0 {
            2
        } else {
            1
        };
        return if need > back { n - back } else { n };
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(max: usize, chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, &mut |r| {
                out.push((String::from_utf8_lossy(r.data).into_owned(), r.partial))
            });
        }
        s.finish(&mut |r| out.push((String::from_utf8_lossy(r.data).into_owned(), r.partial)));
        out
    }

    #[test]
    fn whole_lines_across_chunks() {
        let out = run(100, &[b"ab", b"c\nde\n", b"f"]);
        assert_eq!(
            out,
            vec![
                ("abc".into(), false),
                ("de".into(), false),
                ("f".into(), false)
            ]
        );
    }

    #[test]
    fn flush_hands_over_the_unfinished_line() {
        let mut s = LineSplitter::new(100);
        let mut out = Vec::new();
        let mut f =
            |r: Record<'_>| out.push((String::from_utf8_lossy(r.data).into_owned(), r.partial));
        s.feed(b"a\n/ # ", &mut f);
        s.flush(&mut f);
        // Half of a two-byte character waits for the rest.
        s.feed(&[0xC3], &mut f);
        s.flush(&mut f);
        s.feed(&[0xA9, b'\n'], &mut f);
        assert_eq!(
            out,
            vec![
                ("a".into(), false),
                ("/ # ".into(), true),
                ("é".into(), false)
            ]
        );
    }

    #[test]
    fn long_lines_are_split_not_truncated() {
        let out = run(4, &[b"abcdefghij\n"]);
        assert_eq!(
            out,
            vec![
                ("abcd".into(), true),
                ("efgh".into(), true),
                ("ij".into(), false)
            ]
        );
    }

    #[test]
    fn splits_keep_utf8_characters_whole() {
        // "aé" is 3 bytes; with max 4, "aéé" must cut after "aé" (3), not inside the second é.
        let out = run(4, &["aéé\n".as_bytes()]);
        assert_eq!(out, vec![("aé".into(), true), ("é".into(), false)]);
    }
}
