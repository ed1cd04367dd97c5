//! The audit journal: where an audit event is durable before it is indexed,
//! and where its body stays.
//!
//! Writing each group of events straight into the indexed audit table costs
//! a SQLite transaction (every touched index page rewritten into the WAL)
//! per group, which at small groups is most of a request's CPU. Instead a
//! group is one `write` of framed records to an append-only file (and one
//! `fdatasync` with `Durability::PowerLoss`); the store moves what has been
//! journaled into the audit table in large batches, in the background and
//! before every query, so lookups always see every answered event.
//!
//! The table indexes each journaled event's columns and points at its record
//! (generation, offset, length) instead of copying the body: a ~1.5 KB body
//! written into SQLite (its pages, the WAL, the checkpoint) was half the cost
//! of moving an event. So the files are kept as the bodies' segments, and go
//! only when no row points into them any more (retention, clearing).
//!
//! Files are `audit-journal.<generation>`; a new one starts at `SEGMENT_BYTES`
//! and at every open. The store's meta table holds the position (generation,
//! offset) of the first byte not yet moved into the table; everything from it
//! on is replayed when the store opens, so a crash loses nothing written.
//!
//! A record is `[payload length u32][crc32 of payload u32][payload]`, little
//! endian. A record cut short by a crash (or failing its checksum) ends its
//! file: nothing after it was ever acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::{AuditRow, Result, StoreError};

const PREFIX: &str = "audit-journal.";

/// Size at which appends continue in a new file: retention frees whole
/// files, and one file per move (every 250 ms) would be thousands a day.
const SEGMENT_BYTES: u64 = 128 << 20;

/// A place in the journal: a generation and a byte offset in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Pos {
    pub generation: u64,
    pub offset: u64,
}

impl Pos {
    /// The start of generation `generation`'s file.
    pub(crate) fn start(generation: u64) -> Pos {
        Pos {
            generation,
            offset: 0,
        }
    }

    /// `"gen:offset"`; a bare `"gen"` (written before bodies stayed in the
    /// files) is that file's start.
    pub(crate) fn parse(s: &str) -> Option<Pos> {
        let (g, o) = s.split_once(':').unwrap_or((s, "0"));
        Some(Pos {
            generation: g.parse().ok()?,
            offset: o.parse().ok()?,
        })
    }

    pub(crate) fn render(&self) -> String {
        format!("{}:{}", self.generation, self.offset)
    }
}

/// Where a record is: the table keeps this instead of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    pub generation: u64,
    pub offset: u64,
    pub len: u32,
}

/// One append (or a file's records from a position): its bytes and where
/// they start.
pub(crate) struct Chunk {
    pub at: Pos,
    pub bytes: Vec<u8>,
}

/// Decoded records without their bodies, and where each record is.
#[derive(Default)]
pub(crate) struct Decoded {
    pub rows: Vec<AuditRow>,
    pub locs: Vec<Loc>,
}

impl Decoded {
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    pub(crate) fn clear(&mut self) {
        self.rows.clear();
        self.locs.clear();
    }
}

/// The file being appended to and the bytes not yet moved into the table.
struct Active {
    generation: u64,
    file: File,
    len: u64,
    /// Every record not yet moved, in order, one buffer per append (small
    /// buffers recycle; one large growing one did not).
    pending: Vec<Chunk>,
    pending_bytes: usize,
}

pub(crate) struct Journal {
    dir: PathBuf,
    sync: bool,
    active: Mutex<Active>,
    /// Held open: the exclusive lock that makes this process the owner.
    _lock: File,
}

/// Take the journal's ownership lock in `dir`; `None` when another
/// process holds it.
pub(crate) fn try_own(dir: &Path) -> Result<Option<File>> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("audit-journal.lock"))
        .map_err(io)?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// What one move into the audit table takes: the appends, and the
/// position just after them.
pub(crate) struct Taken {
    pub chunks: Vec<Chunk>,
    pub len: usize,
    pub next: Pos,
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("audit journal: {e}"))
}

fn path_of(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{generation}"))
}

/// Journal generations present in `dir`, ascending.
pub(crate) fn generations(dir: &Path) -> Result<Vec<u64>> {
    let mut gens = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let name = entry.map_err(io)?.file_name();
        if let Some(g) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|g| g.parse::<u64>().ok())
        {
            gens.push(g);
        }
    }
    gens.sort_unstable();
    Ok(gens)
}

/// The records of a journal file from `from` (a record boundary) on, up to
/// the first incomplete or corrupt one; what precedes `from` is not read.
pub(crate) fn read_from(dir: &Path, from: Pos) -> Result<Chunk> {
    let mut file = File::open(path_of(dir, from.generation)).map_err(io)?;
    file.seek(SeekFrom::Start(from.offset)).map_err(io)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io)?;
    bytes.truncate(valid_prefix(&bytes));
    Ok(Chunk { at: from, bytes })
}

/// The body of the record at `loc`, checked against its checksum.
pub(crate) fn read_body(dir: &Path, file: &File, loc: Loc) -> Result<String> {
    let mut buf = vec![0u8; loc.len as usize];
    file.read_exact_at(&mut buf, loc.offset).map_err(io)?;
    frame_at(&buf, 0)
        .and_then(|(payload, _)| decode_payload(payload, true))
        .map(|r| r.body)
        .ok_or_else(|| StoreError::Corrupt {
            kind: "audit-journal".into(),
            key: format!("{}", path_of(dir, loc.generation).display()),
            reason: format!("no intact record at offset {}", loc.offset),
        })
}

/// Open generation `generation`'s file for reading bodies.
pub(crate) fn open_segment(dir: &Path, generation: u64) -> Result<File> {
    File::open(path_of(dir, generation)).map_err(io)
}

pub(crate) fn remove(dir: &Path, generation: u64) {
    if let Err(e) = std::fs::remove_file(path_of(dir, generation))
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(generation, error = %e, "removing an audit journal file failed");
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

impl Journal {
    /// Start appending at generation `generation` (a new, empty file).
    pub(crate) fn create(dir: &Path, generation: u64, sync: bool, lock: File) -> Result<Journal> {
        let file = new_file(dir, generation, sync)?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            sync,
            active: Mutex::new(Active {
                generation,
                file,
                len: 0,
                pending: Vec::new(),
                pending_bytes: 0,
            }),
            _lock: lock,
        })
    }

    /// Append rows as one write: durable (against a crash of the process,
    /// or against power loss with `sync`) once this returns. Returns the
    /// bytes now waiting to be moved into the table.
    pub(crate) fn append(&self, rows: &[AuditRow]) -> Result<usize> {
        let mut buf = Vec::with_capacity(rows.iter().map(|r| r.body.len() + 256).sum());
        for r in rows {
            encode_record(&mut buf, r);
        }
        let mut a = self.active.lock().unwrap_or_else(|e| e.into_inner());
        if a.len >= SEGMENT_BYTES {
            self.switch(&mut a)?;
        }
        let written = a.file.write_all(&buf).and_then(|()| {
            if self.sync {
                a.file.sync_data()
            } else {
                Ok(())
            }
        });
        match written {
            Ok(()) => {
                let at = Pos {
                    generation: a.generation,
                    offset: a.len,
                };
                a.len += buf.len() as u64;
                a.pending_bytes += buf.len();
                a.pending.push(Chunk { at, bytes: buf });
                Ok(a.pending_bytes)
            }
            Err(e) => {
                // A partial record would hide every later one: cut it off,
                // and if that fails too, go on in a fresh file.
                let len = a.len;
                if a.file.set_len(len).is_err() {
                    self.switch(&mut a)?;
                }
                Err(io(e))
            }
        }
    }

    /// Take everything pending; `None` when nothing is.
    pub(crate) fn take(&self) -> Option<Taken> {
        let mut a = self.active.lock().unwrap_or_else(|e| e.into_inner());
        if a.pending.is_empty() {
            return None;
        }
        let chunks = std::mem::take(&mut a.pending);
        let len = std::mem::take(&mut a.pending_bytes);
        Some(Taken {
            chunks,
            len,
            next: Pos {
                generation: a.generation,
                offset: a.len,
            },
        })
    }

    /// A move failed: its bytes are pending again, ahead of newer ones.
    pub(crate) fn give_back(&self, taken: Taken) {
        let mut a = self.active.lock().unwrap_or_else(|e| e.into_inner());
        let mut chunks = taken.chunks;
        chunks.append(&mut a.pending);
        a.pending = chunks;
        a.pending_bytes += taken.len;
    }

    /// The oldest generation that may still hold records not in the table
    /// (or be written to): files before it are only segments.
    pub(crate) fn first_unmoved(&self) -> u64 {
        let a = self.active.lock().unwrap_or_else(|e| e.into_inner());
        a.pending.first().map_or(a.generation, |c| c.at.generation)
    }

    /// Continue in the next generation's file.
    fn switch(&self, a: &mut Active) -> Result<()> {
        let generation = a.generation + 1;
        a.file = new_file(&self.dir, generation, self.sync)?;
        a.generation = generation;
        a.len = 0;
        Ok(())
    }
}

fn new_file(dir: &Path, generation: u64, sync: bool) -> Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path_of(dir, generation))
        .map_err(io)?;
    if sync {
        sync_dir(dir)?;
    }
    Ok(file)
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// Append one framed record.
pub(crate) fn encode_record(buf: &mut Vec<u8>, r: &AuditRow) {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; 8]);
    put_str(buf, &r.event_id);
    buf.extend_from_slice(&r.event_time_ms.to_le_bytes());
    put_str(buf, &r.event_name);
    put_str(buf, &r.event_source);
    put_str(buf, &r.username);
    put_str(buf, &r.access_key_id);
    put_str(buf, &r.account);
    buf.push(u8::from(r.read_only));
    buf.extend_from_slice(&(r.resource_names.len() as u32).to_le_bytes());
    for n in &r.resource_names {
        put_str(buf, n);
    }
    put_str(buf, &r.body);
    let payload_len = buf.len() - start - 8;
    let crc = crc32fast::hash(buf.get(start + 8..).unwrap_or_default());
    let mut head = [0u8; 8];
    let (len_bytes, crc_bytes) = head.split_at_mut(4);
    len_bytes.copy_from_slice(&(payload_len as u32).to_le_bytes());
    crc_bytes.copy_from_slice(&crc.to_le_bytes());
    if let Some(slot) = buf.get_mut(start..start + 8) {
        slot.copy_from_slice(&head);
    }
}

/// Length of the longest prefix of whole, intact records.
fn valid_prefix(bytes: &[u8]) -> usize {
    let mut at = 0;
    while let Some((_, next)) = frame_at(bytes, at) {
        at = next;
    }
    at
}

/// The payload of the record at `at` and where the next one starts.
fn frame_at(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let head = bytes.get(at..at.checked_add(8)?)?;
    let len = u32::from_le_bytes(head.get(..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(head.get(4..)?.try_into().ok()?);
    let end = at.checked_add(8)?.checked_add(len)?;
    let payload = bytes.get(at + 8..end)?;
    (crc32fast::hash(payload) == crc).then_some((payload, end))
}

/// Decode every whole record of `bytes` (stops at the first bad one).
#[cfg(test)]
pub(crate) fn decode_all(bytes: &[u8]) -> Vec<AuditRow> {
    let mut at = 0;
    let mut rows = Vec::new();
    while let Some((payload, next)) = frame_at(bytes, at) {
        let Some(r) = decode_payload(payload, true) else {
            break;
        };
        rows.push(r);
        at = next;
    }
    rows
}

/// Decode up to `max` records of `chunk` from offset `*at` (advanced) into
/// `out`, each without its body and with where its record is; returns how
/// many were decoded (0 at the end or a bad record).
pub(crate) fn decode_located(
    chunk: &Chunk,
    at: &mut usize,
    max: usize,
    out: &mut Decoded,
) -> usize {
    let mut n = 0;
    while n < max {
        let Some((payload, next)) = frame_at(&chunk.bytes, *at) else {
            break;
        };
        let Some(r) = decode_payload(payload, false) else {
            break;
        };
        let loc = Loc {
            generation: chunk.at.generation,
            offset: chunk.at.offset + *at as u64,
            len: (next - *at) as u32,
        };
        out.rows.push(r);
        out.locs.push(loc);
        *at = next;
        n += 1;
    }
    n
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

/// A record's row; its body only `with_body` (the table points at it).
fn decode_payload(b: &[u8], with_body: bool) -> Option<AuditRow> {
    let mut c = Cursor { b, at: 0 };
    let event_id = c.string()?;
    let event_time_ms = c.i64()?;
    let event_name = c.string()?;
    let event_source = c.string()?;
    let username = c.string()?;
    let access_key_id = c.string()?;
    let account = c.string()?;
    let read_only = *c.take(1)?.first()? != 0;
    let n = c.u32()? as usize;
    let mut resource_names = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        resource_names.push(c.string()?);
    }
    let body = if with_body {
        c.string()?
    } else {
        let n = c.u32()? as usize;
        c.take(n)?;
        String::new()
    };
    Some(AuditRow {
        seq: 0,
        event_id,
        event_time_ms,
        event_name,
        event_source,
        username,
        access_key_id,
        account,
        resource_names,
        read_only,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: i64) -> AuditRow {
        AuditRow {
            event_id: format!("id-{i}"),
            event_time_ms: i,
            event_name: "GetObject".into(),
            event_source: "s3.amazonaws.com".into(),
            username: "alice".into(),
            access_key_id: "AKIAEXAMPLE".into(),
            account: "123456789012".into(),
            resource_names: vec!["arn:aws:s3:::b/k".into(), "b".into()],
            read_only: i % 2 == 0,
            body: format!("{{\"n\":{i}}}"),
            ..AuditRow::default()
        }
    }

    #[test]
    fn records_roundtrip() {
        let mut buf = Vec::new();
        let rows: Vec<AuditRow> = (0..5).map(row).collect();
        for r in &rows {
            encode_record(&mut buf, r);
        }
        assert_eq!(decode_all(&buf), rows);
    }

    #[test]
    fn a_torn_or_corrupt_record_ends_the_file() {
        let mut buf = Vec::new();
        for r in (0..3).map(row) {
            encode_record(&mut buf, &r);
        }
        let whole = buf.len();
        encode_record(&mut buf, &row(3));
        // Every cut inside the last record keeps exactly the first three.
        for cut in whole..buf.len() {
            assert_eq!(decode_all(&buf[..cut]).len(), 3, "cut at {cut}");
            assert_eq!(valid_prefix(&buf[..cut]), whole);
        }
        // A flipped bit anywhere in the last record drops it alone.
        for i in whole..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert_eq!(decode_all(&bad).len(), 3, "flip at {i}");
        }
        assert_eq!(decode_all(&buf).len(), 4);
    }

    fn ids(t: &Taken) -> Vec<String> {
        t.chunks
            .iter()
            .flat_map(|c| {
                let mut out = Decoded::default();
                decode_located(c, &mut 0, usize::MAX, &mut out);
                out.rows
            })
            .map(|r| r.event_id)
            .collect()
    }

    #[test]
    fn take_and_give_back_keep_order_and_locations() {
        let dir = std::env::temp_dir().join(format!("kc-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lock = try_own(&dir).unwrap().unwrap();
        assert!(
            try_own(&dir).unwrap().is_none(),
            "a second owner is refused"
        );
        let j = Journal::create(&dir, 7, false, lock).unwrap();
        j.append(&[row(1), row(2)]).unwrap();
        let t = j.take().unwrap();
        let end = read_from(&dir, Pos::start(7)).unwrap().bytes.len() as u64;
        assert_eq!(
            t.next,
            Pos {
                generation: 7,
                offset: end
            }
        );
        j.append(&[row(3)]).unwrap();
        assert_eq!(j.first_unmoved(), 7);
        j.give_back(t);
        let t = j.take().unwrap();
        assert_eq!(ids(&t), ["id-1", "id-2", "id-3"]);
        assert!(j.take().is_none());
        // Every location reads back its own record's body.
        let f = open_segment(&dir, 7).unwrap();
        for c in &t.chunks {
            let mut out = Decoded::default();
            decode_located(c, &mut 0, usize::MAX, &mut out);
            for (r, loc) in out.rows.into_iter().zip(out.locs) {
                assert!(r.body.is_empty(), "bodies stay in the file");
                let n: i64 = r.event_time_ms;
                assert_eq!(read_body(&dir, &f, loc).unwrap(), row(n).body);
            }
        }
        // A location that is not a record's start is refused, not misread.
        let bad = Loc {
            generation: 7,
            offset: 3,
            len: 40,
        };
        assert!(read_body(&dir, &f, bad).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn positions_parse_both_formats() {
        assert_eq!(
            Pos::parse("5"),
            Some(Pos {
                generation: 5,
                offset: 0
            })
        );
        let p = Pos {
            generation: 9,
            offset: 1234,
        };
        assert_eq!(Pos::parse(&p.render()), Some(p));
        assert_eq!(Pos::parse("x:1"), None);
        assert_eq!(Pos::parse("1:"), None);
    }
}
