//! A message ready for DATA, held so that memory does not grow with its size.
//!
//! A [`Message`] is a *skeleton* in memory with *sources* spliced into it at given
//! offsets. Each source is an open file, read when the message is sent:
//!
//! * the compose face's large attachments: the skeleton is what mail-builder wrote
//!   (headers, MIME structure, the small parts), and each large attachment's body is
//!   its file, base64-encoded on the fly in 76-column lines ended by CRLF, exactly as
//!   mail-builder encodes a body it holds in memory;
//! * a queued message: the skeleton is empty and the queue's file is the one source,
//!   copied as it is.
//!
//! A message from bytes ([`Message::from_bytes`], the sendmail face) is all skeleton.
//!
//! Files are read with positioned reads (`pread`), so one message can be read any
//! number of times ([`Message::reader`]) — sent, then queued — and the files stay
//! open from the moment the message is built: one removed or renamed meanwhile is
//! still read. A file whose size is no longer what it was when the message was built
//! is an error when read: the size given to the server (SIZE) and the message would
//! no longer agree, and a truncated attachment must not go as if whole.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

pub mod downgrade;

use downgrade::HeaderScan;

/// Input bytes per base64 line: 57 bytes make 76 characters (RFC 2045 §6.8).
const BASE64_LINE_IN: usize = 57;
/// Characters per full base64 line, before its CRLF.
const BASE64_LINE_OUT: usize = 76;
/// Base64 lines encoded per refill of a source's buffer: 57 KiB in, 76 KiB out.
const LINES_PER_BLOCK: usize = 1024;
/// Bytes read per refill from a file copied as it is.
const RAW_BLOCK: usize = 64 * 1024;

/// How a source's bytes go into the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// As they are.
    Raw,
    /// Base64 in lines of 76 characters, each ended by CRLF (the last one too).
    Base64,
}

/// A file whose bytes are spliced into the skeleton when the message is read.
#[derive(Debug)]
struct Source {
    /// Where in the skeleton its bytes go.
    at: usize,
    file: File,
    /// For error messages.
    path: PathBuf,
    /// Where its bytes begin in the file; they run to its end.
    start: u64,
    /// Its size when the message was built.
    size: u64,
    encoding: Encoding,
}

impl Source {
    /// Bytes it puts into the message.
    fn len(&self) -> u64 {
        match self.encoding {
            Encoding::Raw => self.size,
            Encoding::Base64 => base64_len(self.size),
        }
    }
}

/// A finished message, ready for DATA: see the module documentation.
pub struct Message {
    skeleton: Vec<u8>,
    /// In the order of their offsets.
    sources: Vec<Source>,
    /// Bytes the reader yields.
    len: u64,
    /// The size as the server counts it (RFC 1870): see [`wire_size`].
    wire_size: u64,
    /// Bytes of the header section, the empty line that ends it included (the whole
    /// message when it has no such line).
    header_len: u64,
    /// Whether some byte of the header section is not 7-bit (RFC 6532: UTF-8 fields).
    header_8bit: bool,
    /// Whether some byte after the header section is not 7-bit.
    body_8bit: bool,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Message({} bytes", self.len)?;
        if !self.sources.is_empty() {
            write!(f, ", {} from files", self.sources.len())?;
        }
        f.write_str(")")
    }
}

/// The `size` bytes of `file` from `start` to its end; `None` if it has more or
/// fewer. One read when it has just that: the room for a byte more comes back empty
/// only at the end of a file.
fn read_whole(file: &File, start: u64, size: usize) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = vec![0u8; size + 1];
    let mut got = 0;
    loop {
        match file.read_at(&mut bytes[got..], start + got as u64) {
            Ok(0) => break,
            Ok(n) => {
                got += n;
                if got >= size {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if got != size {
        return Ok(None);
    }
    bytes.truncate(size);
    Ok(Some(bytes))
}

impl Message {
    /// A message from bytes that are already a whole RFC 5322 message.
    pub fn from_bytes(bytes: Vec<u8>) -> Message {
        let mut counter = WireCounter::default();
        counter.feed(&bytes);
        let mut scan = HeaderScan::default();
        scan.feed(&bytes);
        let (header_len, header_8bit, body_8bit) = scan.finish();
        Message {
            len: bytes.len() as u64,
            wire_size: counter.finish(),
            header_len,
            header_8bit,
            body_8bit,
            skeleton: bytes,
            sources: Vec::new(),
        }
    }

    /// A message that is the rest of `file` from byte `start` on (a queued message),
    /// read as it is sent. The file is read through once here, for its size on the
    /// wire and whether it holds 8-bit data; it must not change afterwards. A message
    /// smaller than one block is read here once and kept in memory instead.
    pub fn from_file_at(file: File, path: &Path, start: u64) -> io::Result<Message> {
        let annotate = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let size = file
            .metadata()
            .map_err(annotate)?
            .len()
            .checked_sub(start)
            .ok_or_else(|| changed(path, 0))?;
        if let Ok(small) = usize::try_from(size)
            && small < RAW_BLOCK
        {
            return read_whole(&file, start, small)
                .map_err(annotate)?
                .map(Message::from_bytes)
                .ok_or_else(|| changed(path, size));
        }
        let mut counter = WireCounter::default();
        let mut scan = HeaderScan::default();
        let mut buf = vec![0u8; RAW_BLOCK];
        let mut offset = start;
        loop {
            let n = match file.read_at(&mut buf, offset) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(annotate(e)),
            };
            let block = &buf[..n];
            counter.feed(block);
            scan.feed(block);
            offset += n as u64;
        }
        if offset - start != size {
            return Err(changed(path, size));
        }
        let (header_len, header_8bit, body_8bit) = scan.finish();
        Ok(Message {
            skeleton: Vec::new(),
            sources: vec![Source {
                at: 0,
                file,
                path: path.to_owned(),
                start,
                size,
                encoding: Encoding::Raw,
            }],
            len: size,
            wire_size: counter.finish(),
            header_len,
            header_8bit,
            body_8bit,
        })
    }

    /// A message made of `skeleton` with each file of `parts` spliced in, base64
    /// encoded, at its offset (offsets in increasing order, each at the start of a
    /// line: right after a LF, as after the blank line that ends a part's headers).
    /// `parts` holds each file open and its size now.
    pub(crate) fn spliced(
        skeleton: Vec<u8>,
        parts: Vec<(usize, File, PathBuf, u64)>,
    ) -> Result<Message, String> {
        let mut counter = WireCounter::default();
        let mut scan = HeaderScan::default();
        let mut from = 0;
        let mut sources = Vec::with_capacity(parts.len());
        for (at, file, path, size) in parts {
            if at < from || at > skeleton.len() || (at > 0 && skeleton[at - 1] != b'\n') {
                return Err(format!(
                    "the body of {} has no place of its own in the message",
                    path.display()
                ));
            }
            counter.feed(&skeleton[from..at]);
            scan.feed(&skeleton[from..at]);
            let source = Source {
                at,
                file,
                path,
                start: 0,
                size,
                encoding: Encoding::Base64,
            };
            // Base64 lines are CRLF-ended 7-bit text: each byte counts as it is.
            counter.feed_clean(source.len());
            scan.feed_clean(source.len());
            sources.push(source);
            from = at;
        }
        counter.feed(&skeleton[from..]);
        scan.feed(&skeleton[from..]);
        let (header_len, header_8bit, body_8bit) = scan.finish();
        let len = skeleton.len() as u64 + sources.iter().map(Source::len).sum::<u64>();
        Ok(Message {
            header_len,
            header_8bit,
            body_8bit,
            wire_size: counter.finish(),
            len,
            skeleton,
            sources,
        })
    }

    /// Bytes the message has as it is read (before line ends are made CRLF).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The size of the message as the server counts it (RFC 1870 §3): every line end
    /// a CRLF, the last line ended, no dot-stuffing. Known without reading any file.
    pub fn wire_size(&self) -> u64 {
        self.wire_size
    }

    /// Whether the message holds 8-bit data (and so needs `BODY=8BITMIME`).
    pub fn is_8bit(&self) -> bool {
        self.header_8bit || self.body_8bit
    }

    /// Whether the header section holds bytes that are not 7-bit: UTF-8 header fields
    /// (RFC 6532), which need SMTPUTF8 or a downgrade ([`Message::downgraded`]).
    pub fn has_8bit_header(&self) -> bool {
        self.header_8bit
    }

    /// Bytes of the header section, the empty line that ends it included (the whole
    /// message when it has no such line). Known without reading any file.
    pub fn header_len(&self) -> u64 {
        self.header_len
    }

    /// Whether some of the message is read from files when it is sent (an error
    /// reading them is then possible).
    pub fn reads_files(&self) -> bool {
        !self.sources.is_empty()
    }

    /// The message's bytes, read from the start; files are read as the reader gets
    /// to them, a block at a time.
    pub fn reader(&self) -> Reader<'_> {
        Reader {
            message: self,
            pos: 0,
            next: 0,
            current: None,
        }
    }

    /// Where a reader that starts `offset` bytes into the message begins: in the
    /// skeleton, or in a source copied as it is. `None` for an offset past the end or
    /// inside a base64 source (where only a header section could end, and none does).
    fn resume_at(&self, offset: u64) -> Option<Resume> {
        let (mut pos, mut done) = (0usize, 0u64);
        for (i, source) in self.sources.iter().enumerate() {
            let plain = (source.at - pos) as u64;
            if offset <= done + plain {
                let pos = pos + usize::try_from(offset - done).ok()?;
                return Some(Resume {
                    pos,
                    next: i,
                    into: None,
                });
            }
            done += plain;
            pos = source.at;
            if offset < done + source.len() {
                return (source.encoding == Encoding::Raw).then_some(Resume {
                    pos,
                    next: i + 1,
                    into: Some(offset - done),
                });
            }
            done += source.len();
        }
        let pos = pos + usize::try_from(offset - done).ok()?;
        (pos <= self.skeleton.len()).then_some(Resume {
            pos,
            next: self.sources.len(),
            into: None,
        })
    }

    /// A reader from the place `resume_at` gave.
    fn reader_from(&self, at: &Resume) -> Reader<'_> {
        let current = at.into.and_then(|offset| {
            let source = self.sources.get(at.next.checked_sub(1)?)?;
            let mut reader = SourceReader::new(source);
            reader.offset = offset;
            Some(reader)
        });
        Reader {
            message: self,
            pos: at.pos,
            next: at.next,
            current,
        }
    }

    /// Writes the whole message to `out`; returns the number of bytes written.
    pub fn write_to(&self, out: &mut dyn Write) -> io::Result<u64> {
        let mut reader = self.reader();
        let mut buf = vec![0u8; RAW_BLOCK];
        let mut total = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            out.write_all(&buf[..n])?;
            total += n as u64;
        }
    }

    /// The whole message in memory (for small messages and tests).
    pub fn to_vec(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        self.write_to(&mut out)?;
        Ok(out)
    }
}

/// A place in a [`Message`] to read on from ([`Message::resume_at`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Resume {
    /// Next skeleton byte.
    pos: usize,
    /// Next source to open.
    next: usize,
    /// Bytes into the source before `next` (one copied as it is) to read on from.
    into: Option<u64>,
}

/// Reads a [`Message`] from its start: the skeleton, and each source's bytes where
/// they go.
pub struct Reader<'a> {
    message: &'a Message,
    /// Next skeleton byte to give.
    pos: usize,
    /// Next source to open.
    next: usize,
    current: Option<SourceReader<'a>>,
}

impl Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(current) = &mut self.current {
                let n = current.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                self.current = None;
            }
            let sources = &self.message.sources;
            let skeleton = &self.message.skeleton;
            let end = sources.get(self.next).map_or(skeleton.len(), |s| s.at);
            if self.pos < end {
                let n = (end - self.pos).min(buf.len());
                buf[..n].copy_from_slice(&skeleton[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            match sources.get(self.next) {
                Some(source) => {
                    self.current = Some(SourceReader::new(source));
                    self.next += 1;
                }
                None => return Ok(0),
            }
        }
    }
}

/// One source's bytes, encoded as it asks, a block at a time.
struct SourceReader<'a> {
    source: &'a Source,
    /// Bytes of the file read so far.
    offset: u64,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Next byte of `output` to give.
    out_pos: usize,
    done: bool,
}

impl<'a> SourceReader<'a> {
    fn new(source: &'a Source) -> SourceReader<'a> {
        SourceReader {
            source,
            offset: 0,
            input: Vec::new(),
            output: Vec::new(),
            out_pos: 0,
            done: false,
        }
    }

    fn annotate(&self, e: io::Error) -> io::Error {
        io::Error::new(
            e.kind(),
            format!("attachment {}: {e}", self.source.path.display()),
        )
    }

    /// Reads the next block of the file and encodes it into `output`.
    fn refill(&mut self) -> io::Result<()> {
        let source = self.source;
        let block = match source.encoding {
            Encoding::Raw => RAW_BLOCK,
            Encoding::Base64 => BASE64_LINE_IN * LINES_PER_BLOCK,
        };
        let left = source.size - self.offset;
        let want = usize::try_from(left).map_or(block, |left| left.min(block));
        self.input.resize(want, 0);
        let mut got = 0;
        while got < want {
            match source
                .file
                .read_at(&mut self.input[got..], source.start + self.offset)
            {
                Ok(0) => return Err(changed(&source.path, source.size)),
                Ok(n) => {
                    got += n;
                    self.offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.annotate(e)),
            }
        }
        if self.offset == source.size {
            // The end of what was there when the message was built: anything more
            // would make the message longer than announced.
            let mut probe = [0u8; 1];
            loop {
                match source.file.read_at(&mut probe, source.start + self.offset) {
                    Ok(0) => break,
                    Ok(_) => return Err(changed(&source.path, source.size)),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(self.annotate(e)),
                }
            }
            self.done = true;
        }
        self.out_pos = 0;
        match source.encoding {
            Encoding::Raw => std::mem::swap(&mut self.input, &mut self.output),
            Encoding::Base64 => {
                self.output.clear();
                encode_lines(&self.input, &mut self.output)?;
            }
        }
        Ok(())
    }
}

impl Read for SourceReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.out_pos >= self.output.len() {
            if self.done {
                return Ok(0);
            }
            self.refill()?;
        }
        let available = &self.output[self.out_pos..];
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.out_pos += n;
        Ok(n)
    }
}

/// Appends `input` base64-encoded to `out`: 57 bytes to a line of 76 characters,
/// each line ended by CRLF, the last (shorter) one too.
pub(crate) fn encode_lines(input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    let total = usize::try_from(base64_len(input.len() as u64)).map_err(io::Error::other)?;
    let encoded = input.len().div_ceil(3) * 4;
    let start = out.len();
    out.resize(start + total, 0);
    // Encoded in one pass (57 is a multiple of 3, so the lines need no separate
    // encoding) at the end of the room made, then each line moved to its place with
    // its CRLF: a line's place is never after where it was encoded.
    let region = &mut out[start..];
    let tail = total - encoded;
    let written = BASE64
        .encode_slice(input, &mut region[tail..])
        .map_err(io::Error::other)?;
    if written != encoded {
        return Err(io::Error::other("base64: unexpected length"));
    }
    let mut to = 0;
    let mut from = tail;
    while from < total {
        let n = (total - from).min(BASE64_LINE_OUT);
        region.copy_within(from..from + n, to);
        region[to + n] = b'\r';
        region[to + n + 1] = b'\n';
        to += n + 2;
        from += n;
    }
    Ok(())
}

/// Bytes `n` input bytes take base64-encoded in CRLF-ended lines of 76 characters.
pub fn base64_len(n: u64) -> u64 {
    let line_in = BASE64_LINE_IN as u64;
    let full = n / line_in;
    let rest = n % line_in;
    let last = if rest == 0 {
        0
    } else {
        rest.div_ceil(3) * 4 + 2
    };
    full * (BASE64_LINE_OUT as u64 + 2) + last
}

fn changed(path: &Path, size: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{} changed while outbox was reading it: it had {size} bytes when the \
             message was made",
            path.display()
        ),
    )
}

/// The size of the message as the server counts it (RFC 1870 §3): every line end a
/// CRLF, the last line ended, no dot-stuffing.
pub fn wire_size(bytes: &[u8]) -> u64 {
    let mut counter = WireCounter::default();
    counter.feed(bytes);
    counter.finish()
}

/// Counts a message's size as the server sees it (RFC 1870 §3), fed a piece at a
/// time: every line end (CRLF, LF or CR alone) counts as CRLF, and an unended last
/// line is ended.
#[derive(Debug, Default)]
pub struct WireCounter {
    size: u64,
    line_open: bool,
    /// The last byte was a CR: a LF next belongs to its line end.
    after_cr: bool,
}

impl WireCounter {
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\r' => {
                    self.size += 2;
                    self.line_open = false;
                    self.after_cr = true;
                }
                b'\n' => {
                    self.size += 2;
                    self.line_open = false;
                }
                _ => {
                    self.size += 1;
                    self.line_open = true;
                    self.after_cr = false;
                }
            }
        }
    }

    /// `n` bytes that begin with neither CR nor LF, have only CRLF line ends, and end
    /// with one (or are none at all): each counts as it is.
    fn feed_clean(&mut self, n: u64) {
        if n > 0 {
            self.size += n;
            self.line_open = false;
            self.after_cr = false;
        }
    }

    pub fn finish(&self) -> u64 {
        if self.line_open {
            self.size + 2
        } else {
            self.size
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, bytes: &[u8]) -> (PathBuf, File) {
        let dir = std::env::temp_dir().join(format!("outbox-message-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let file = File::open(&path).unwrap();
        (path, file)
    }

    fn base64_reference(input: &[u8]) -> Vec<u8> {
        let text = BASE64.encode(input);
        let mut out = Vec::new();
        for line in text.as_bytes().chunks(76) {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn base64_lines_and_their_length() {
        for n in [
            0usize,
            1,
            2,
            3,
            56,
            57,
            58,
            113,
            114,
            115,
            57 * 1024 + 1,
            200_000,
        ] {
            let input: Vec<u8> = (0..n).map(|i| (i * 7 % 256) as u8).collect();
            let mut out = Vec::new();
            encode_lines(&input, &mut out).unwrap();
            assert_eq!(out, base64_reference(&input), "{n}");
            assert_eq!(base64_len(n as u64), out.len() as u64, "{n}");
        }
    }

    #[test]
    fn a_spliced_message_reads_as_its_pieces_in_order() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let (path, file) = temp_file("spliced.bin", &data);
        let (path2, file2) = temp_file("empty.bin", b"");
        let skeleton = b"H: v\r\n\r\n\r\n--b\r\n\r\n\r\n--b--\r\n".to_vec();
        let message = Message::spliced(
            skeleton.clone(),
            vec![
                (8, file, path.clone(), data.len() as u64),
                (17, file2, path2.clone(), 0),
            ],
        )
        .unwrap();
        let mut expected = skeleton[..8].to_vec();
        expected.extend(base64_reference(&data));
        expected.extend_from_slice(&skeleton[8..]);
        // Read twice: the files are read by position, so a second read starts over.
        for _ in 0..2 {
            let got = message.to_vec().unwrap();
            assert!(got == expected);
            assert_eq!(message.len(), got.len() as u64);
            assert_eq!(message.wire_size(), wire_size(&got));
        }
        // Small reads give the same bytes.
        let mut small = Vec::new();
        let mut reader = message.reader();
        let mut buf = [0u8; 7];
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            small.extend_from_slice(&buf[..n]);
        }
        assert!(small == expected);
        assert!(!message.is_8bit());
        std::fs::remove_file(path).unwrap();
        std::fs::remove_file(path2).unwrap();
    }

    #[test]
    fn a_source_that_changed_size_is_an_error() {
        let (path, file) = temp_file("changing.bin", &[1u8; 1000]);
        let skeleton = b"H: v\r\n\r\n\r\n".to_vec();
        let message = Message::spliced(skeleton, vec![(8, file, path.clone(), 1000)]).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"more")
            .unwrap();
        let err = message.to_vec().unwrap_err();
        assert!(err.to_string().contains("changed"), "{err}");
        std::fs::write(&path, [1u8; 10]).unwrap();
        let err = message.to_vec().unwrap_err();
        assert!(err.to_string().contains("changed"), "{err}");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_splice_point_must_start_a_line() {
        let (path, file) = temp_file("misplaced.bin", b"x");
        assert!(Message::spliced(b"ab".to_vec(), vec![(1, file, path.clone(), 1)]).is_err());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_message_from_a_file_is_the_file() {
        let text = b"Subject: x\nFrom: y\n\nGr\xc3\xbc\xc3\x9fe\r\nlast";
        let (path, file) = temp_file("queued.eml", text);
        let message = Message::from_file_at(file, &path, 0).unwrap();
        assert_eq!(message.to_vec().unwrap(), text);
        assert_eq!(message.len(), text.len() as u64);
        assert_eq!(message.wire_size(), wire_size(text));
        assert!(message.is_8bit());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn wire_counter_pieces_add_up() {
        let text = b"a\r\nb\rc\nd\r\r\ne";
        for split in 0..=text.len() {
            let mut counter = WireCounter::default();
            counter.feed(&text[..split]);
            counter.feed(&text[split..]);
            assert_eq!(counter.finish(), wire_size(text), "{split}");
        }
    }
}
