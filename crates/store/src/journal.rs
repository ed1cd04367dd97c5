//! The audit journal: where an audit event is durable before it is indexed.
//!
//! Writing each group of events straight into the indexed audit table costs
//! a SQLite transaction (every touched index page rewritten into the WAL)
//! per group, which at small groups is most of a request's CPU. Instead a
//! group is one `write` of framed records to an append-only file (and one
//! `fdatasync` with `Durability::PowerLoss`); the store moves what has been
//! journaled into the audit table in large batches, in the background and
//! before every query, so lookups always see every answered event.
//!
//! Files are `audit-journal.<generation>`. The store's meta table holds the first
//! generation not yet moved into the audit table; every file from it on is
//! replayed when the store opens, so a crash loses nothing that was written.
//!
//! A record is `[payload length u32][crc32 of payload u32][payload]`, little
//! endian. A record cut short by a crash (or failing its checksum) ends its
//! file: nothing after it was ever acknowledged.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::{AuditRow, Result, StoreError};

const PREFIX: &str = "audit-journal.";

/// The file being appended to and the bytes not yet moved into the table.
struct Active {
    generation: u64,
    file: File,
    len: u64,
    /// Every record of the files in `covers`, in order, one buffer per
    /// append (small buffers recycle; one large growing one did not).
    pending: Vec<Vec<u8>>,
    pending_bytes: usize,
    /// Generations whose whole content is in `pending` (the active one last).
    covers: Vec<u64>,
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

/// What one move into the audit table takes: the bytes, the files they
/// came from, and the generation that is first not taken.
pub(crate) struct Taken {
    pub bytes: Vec<Vec<u8>>,
    pub len: usize,
    pub covers: Vec<u64>,
    pub next_gen: u64,
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

/// The records of a journal file, up to the first incomplete or corrupt one.
pub(crate) fn read_file(dir: &Path, generation: u64) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path_of(dir, generation)).map_err(io)?;
    let valid = valid_prefix(&bytes);
    Ok(bytes.get(..valid).map(<[u8]>::to_vec).unwrap_or_default())
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
                covers: vec![generation],
            }),
            _lock: lock,
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Append rows as one write: durable (against a crash of the process,
    /// or against power loss with `sync`) once this returns.
    pub(crate) fn append(&self, rows: &[AuditRow]) -> Result<()> {
        let mut buf = Vec::with_capacity(rows.iter().map(|r| r.body.len() + 256).sum());
        for r in rows {
            encode_record(&mut buf, r);
        }
        let mut a = self.active.lock().unwrap_or_else(|e| e.into_inner());
        let written = a.file.write_all(&buf).and_then(|()| {
            if self.sync {
                a.file.sync_data()
            } else {
                Ok(())
            }
        });
        match written {
            Ok(()) => {
                a.len += buf.len() as u64;
                a.pending_bytes += buf.len();
                a.pending.push(buf);
                Ok(())
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

    /// Bytes waiting to be moved into the audit table.
    pub(crate) fn pending_len(&self) -> usize {
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pending_bytes
    }

    /// Take everything pending and continue in a new file; `None` when
    /// nothing is pending.
    pub(crate) fn take(&self) -> Result<Option<Taken>> {
        let mut a = self.active.lock().unwrap_or_else(|e| e.into_inner());
        if a.pending.is_empty() {
            return Ok(None);
        }
        self.switch(&mut a)?;
        let bytes = std::mem::take(&mut a.pending);
        let len = std::mem::take(&mut a.pending_bytes);
        let current = a.generation;
        let covers: Vec<u64> = std::mem::replace(&mut a.covers, vec![current])
            .into_iter()
            .filter(|g| *g != current)
            .collect();
        Ok(Some(Taken {
            bytes,
            len,
            covers,
            next_gen: current,
        }))
    }

    /// A move failed: its bytes are pending again, ahead of newer ones.
    pub(crate) fn give_back(&self, taken: Taken) {
        let mut a = self.active.lock().unwrap_or_else(|e| e.into_inner());
        let mut bytes = taken.bytes;
        bytes.append(&mut a.pending);
        a.pending = bytes;
        a.pending_bytes += taken.len;
        let mut covers = taken.covers;
        covers.extend_from_slice(&a.covers);
        a.covers = covers;
    }

    /// Continue in the next generation's file.
    fn switch(&self, a: &mut Active) -> Result<()> {
        let generation = a.generation + 1;
        a.file = new_file(&self.dir, generation, self.sync)?;
        a.generation = generation;
        a.len = 0;
        a.covers.push(generation);
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
pub(crate) fn decode_all(bytes: &[u8]) -> Vec<AuditRow> {
    let mut rows = Vec::new();
    let mut at = 0;
    while decode_some(bytes, &mut at, usize::MAX, &mut rows) > 0 {}
    rows
}

/// Decode up to `max` records from offset `*at` into `rows`, advancing
/// `*at`; returns how many were decoded (0 at the end or a bad record).
pub(crate) fn decode_some(
    bytes: &[u8],
    at: &mut usize,
    max: usize,
    rows: &mut Vec<AuditRow>,
) -> usize {
    let mut n = 0;
    while n < max {
        let Some((payload, next)) = frame_at(bytes, *at) else {
            break;
        };
        let Some(r) = decode_payload(payload) else {
            break;
        };
        rows.push(r);
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

fn decode_payload(b: &[u8]) -> Option<AuditRow> {
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
    let body = c.string()?;
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

    #[test]
    fn take_and_give_back_keep_order() {
        let dir = std::env::temp_dir().join(format!("kc-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lock = try_own(&dir).unwrap().unwrap();
        assert!(
            try_own(&dir).unwrap().is_none(),
            "a second owner is refused"
        );
        let j = Journal::create(&dir, 7, false, lock).unwrap();
        j.append(&[row(1), row(2)]).unwrap();
        let t = j.take().unwrap().unwrap();
        assert_eq!(t.covers, vec![7]);
        assert_eq!(t.next_gen, 8);
        j.append(&[row(3)]).unwrap();
        j.give_back(t);
        let t = j.take().unwrap().unwrap();
        let ids: Vec<String> = t
            .bytes
            .iter()
            .flat_map(|b| decode_all(b))
            .map(|r| r.event_id)
            .collect();
        assert_eq!(ids, ["id-1", "id-2", "id-3"]);
        assert_eq!(t.covers, vec![7, 8]);
        assert_eq!(t.next_gen, 9);
        // Each file holds exactly what was written to it.
        assert_eq!(decode_all(&read_file(&dir, 7).unwrap()).len(), 2);
        assert_eq!(decode_all(&read_file(&dir, 8).unwrap()).len(), 1);
        assert!(j.take().unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
