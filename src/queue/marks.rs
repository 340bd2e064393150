//! Delivery marks: a byte per recipient on the first line of an entry's envelope,
//! overwritten in place when an attempt settles some recipients and not others.
//!
//! The envelope's first line is `done = "-+-"`: one byte per recipient of its list, in
//! order, `-` still to do, `+` settled (the server took the message, or the refusal is
//! kept in `failed`). Dropping the settled recipients from the envelope means a new
//! file (see `Locked::rewrite`), as large as the entry: on a full disk it cannot be
//! written. Overwriting bytes the file already has needs no new space on a filesystem
//! that writes in place (ext4, XFS, tmpfs; a copy-on-write one such as btrfs or ZFS may
//! still refuse it), so the marks are written and synced first, and whatever fails
//! after, a later flush leaves the marked recipients out: a full disk never sends
//! anyone a second copy. A mark only ever goes from `-` to `+`, and a byte is never
//! half written, so a crash during the write leaves a valid entry with the old marks
//! or the new ones.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

const TODO: u8 = b'-';
const SETTLED: u8 = b'+';
/// How the envelope begins: the key of the marks and the opening quote.
const PREFIX: &str = "done = \"";

/// The envelope's first line for `count` recipients, none settled.
pub(super) fn fresh_line(count: usize) -> String {
    format!("{PREFIX}{}\"\n", char::from(TODO).to_string().repeat(count))
}

/// An entry's marks, as read from its file.
#[derive(Clone, Debug)]
pub(super) struct Marks {
    /// Where in the file the first mark is; `None` for an envelope written without
    /// marks (format 2), or not where this code writes them.
    at: Option<u64>,
    /// One per recipient of the envelope: settled or not.
    settled: Vec<bool>,
}

impl Marks {
    /// The marks of an envelope of `count` recipients: `value` is its `done` key as
    /// TOML read it, `text` the envelope itself, which begins at `start` in the file.
    pub(super) fn read(
        value: Option<&str>,
        count: usize,
        text: &str,
        start: u64,
    ) -> Result<Marks, String> {
        let Some(value) = value else {
            return Ok(Marks {
                at: None,
                settled: vec![false; count],
            });
        };
        if value.len() != count || !value.bytes().all(|b| b == TODO || b == SETTLED) {
            return Err(format!(
                "its delivery marks {value:?} do not fit its {count} recipients"
            ));
        }
        let in_place = text
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.as_bytes().get(..=count))
            .is_some_and(|marks| marks[..count] == *value.as_bytes() && marks[count] == b'"');
        Ok(Marks {
            at: in_place.then(|| start + PREFIX.len() as u64),
            settled: value.bytes().map(|b| b == SETTLED).collect(),
        })
    }

    /// The places in the envelope's list of the recipients still to do.
    pub(super) fn todo(&self) -> Vec<usize> {
        (0..self.settled.len())
            .filter(|&i| !self.settled[i])
            .collect()
    }

    /// Marks the recipients at `places` settled, in `file` (the entry's, open for
    /// writing), and syncs it. `Ok(false)`: the envelope has no marks to write.
    pub(super) fn settle(&mut self, file: &File, places: &[usize]) -> io::Result<bool> {
        let Some(at) = self.at else {
            return Ok(false);
        };
        let mut settled = self.settled.clone();
        for &i in places {
            if let Some(s) = settled.get_mut(i) {
                *s = true;
            }
        }
        let bytes: Vec<u8> = settled
            .iter()
            .map(|&s| if s { SETTLED } else { TODO })
            .collect();
        file.write_all_at(&bytes, at)?;
        file.sync_data()?;
        self.settled = settled;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_found_where_they_are_written() {
        let text = format!("{}from = \"\"\n", fresh_line(3));
        assert!(text.starts_with("done = \"---\"\n"), "{text}");
        let marks = Marks::read(Some("-+-"), 3, &text.replace("---", "-+-"), 40).unwrap();
        assert_eq!(marks.at, Some(40 + PREFIX.len() as u64));
        assert_eq!(marks.todo(), [0, 2]);

        // Elsewhere than on the first line (an entry edited by hand): honoured, but
        // never written.
        let moved = "from = \"\"\ndone = \"-+\"\n";
        let marks = Marks::read(Some("-+"), 2, moved, 40).unwrap();
        assert_eq!(marks.at, None);
        assert_eq!(marks.todo(), [0]);

        // Format 2: no marks at all.
        let marks = Marks::read(None, 2, "from = \"\"\n", 40).unwrap();
        assert_eq!((marks.at, marks.todo()), (None, vec![0, 1]));

        for (value, count) in [("--", 3), ("-x-", 3), ("", 1)] {
            assert!(
                Marks::read(Some(value), count, &text, 0).is_err(),
                "{value}"
            );
        }
    }
}
