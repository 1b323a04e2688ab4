//! The embedded event log: segment files in the data directory, fsync'd group commit.
//!
//! Layout under the log directory:
//! - `segments/<base offset, 20 digits>.log`: frames `[len u32 LE][crc32 u32 LE][payload]`,
//!   then zeros to the end of the file: a zero length marks the end of the records;
//! - `segments/next.prep`: the next segment, being filled with zeros ahead of its use;
//! - `consumers/<name>.pos`: the last committed position of a durable consumer, one line of
//!   fixed width (the position and its CRC-32, see [`PositionFile`]) overwritten in place;
//! - `LOCK`: held by the one process that writes the log.
//!
//! One writer thread owns the active segment. Appends queue on a channel; the writer drains
//! everything queued, writes it in one go and calls `fdatasync` once for the whole group, then
//! answers every request of the group. Concurrent requests thus share one fsync and throughput
//! does not collapse to one fsync per request. Consumers only ever see records that are durable.
//! At start-up a torn tail (a crash mid-write) is detected by length and checksum and cut off;
//! such a record was never acknowledged.
//!
//! With `preallocate` (off by default), segments are preallocated: the next segment is written
//! full of zeros and synced before the writer takes it, and appends overwrite blocks the file
//! already owns. `fdatasync` then has only data to flush: the file's size and extents do not
//! change, so it does not wait for a file-system journal commit, which an append to a growing
//! file does (with everything else that commit carries: other files' metadata and, on ext4's
//! ordered mode, their data). Zeros written
//! with `fallocate` would not do: its unwritten extents are converted on first write, a journal
//! commit again.
//!
//! The zeros are written at the pace of the records, not at once: a helper thread starts on the
//! next segment when the current one starts, and keeps at most [`PREPARE_AHEAD`] bytes ahead of
//! 5/4 of what has been appended to the current one, syncing each [`PREPARE_CHUNK`]. Writing a
//! whole segment of zeros in one go (the first version) queued tens of megabytes in front of the
//! log's own syncs: p99 at 100,000 events/s was 32–156 ms in four runs (BENCHMARKS.md). When the
//! next segment is not ready in time the writer starts an empty one and appends grow it; nothing
//! waits for the zeros. Paced, it bounded the worst latency in three runs on an idle machine
//! (max ≤ 30 ms against up to 134 ms), but in four later runs on a slower, busier machine its
//! p99 was 14–290 ms against 19 ms for growing segments, and it costs about 15 % of the burst
//! rate: hence off by default.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use livora_common::{ByteSize, ClientId, ConfigError};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use super::{Delivery, EventLog, LogConsumer, LogError, Position, check_consumer_name};

const FRAME_HEADER: usize = 8;
/// The largest record the embedded log accepts (a sanity bound against corrupt lengths).
const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;
/// How many bytes one group commit gathers at most before it writes.
const MAX_GROUP_BYTES: usize = 16 * 1024 * 1024;
/// The name of the segment being prepared.
const PREPARED: &str = "next.prep";
/// A group commit at least this slow is logged (a warning with its write and sync times).
const SLOW_COMMIT: Duration = Duration::from_millis(50);
/// How far the zeros of the next segment may run ahead of 5/4 of the current one's records.
const PREPARE_AHEAD: u64 = 2 * 1024 * 1024;
/// The zeros are written and synced in chunks of this size.
const PREPARE_CHUNK: usize = 1024 * 1024;

/// Configuration of the embedded log (`[event_log.embedded]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedLogConfig {
    /// Directory of the log. Default: `<data_dir>/log`.
    pub dir: Option<PathBuf>,
    /// A segment is closed and a new one started past this size. Default `64MiB`.
    pub segment_bytes: ByteSize,
    /// A closed segment is deleted once every consumer has committed past it and it is older
    /// than this. Default `7d`.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Fill each new segment with zeros before appending to it, so that an append's
    /// `fdatasync` waits for no file-system journal commit. Default `false`: on the benchmark
    /// machine it bounded the worst latency when the cores had room, made it worse when they
    /// did not, and always cost about 15 % of the burst rate (BENCHMARKS.md). Pointless on
    /// copy-on-write file systems (btrfs, ZFS), where an overwrite allocates anyway.
    pub preallocate: bool,
}

impl Default for EmbeddedLogConfig {
    fn default() -> Self {
        Self {
            dir: None,
            segment_bytes: ByteSize::mib(64),
            retention: Duration::from_secs(7 * 86_400),
            preallocate: false,
        }
    }
}

impl EmbeddedLogConfig {
    /// Checks the values, naming the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.segment_bytes.0 < 1024 * 1024 {
            return Err(ConfigError::invalid("event_log.embedded.segment_bytes", "must be at least 1MiB"));
        }
        Ok(())
    }
}

struct AppendRequest {
    payload: Bytes,
    reply: oneshot::Sender<Result<Position, LogError>>,
}

/// The embedded, file-backed event log.
pub struct EmbeddedLog {
    dir: PathBuf,
    tx: mpsc::Sender<AppendRequest>,
    /// The position one past the last durable record.
    durable: watch::Receiver<Position>,
    _lock: File,
}

impl EmbeddedLog {
    /// Opens (or creates) the log in `dir`, recovering from a crash if needed, and starts the
    /// writer thread. Fails if another process holds the log.
    pub fn open(dir: &Path, config: &EmbeddedLogConfig) -> Result<Self, LogError> {
        Self::open_with(dir, config, false)
    }

    /// [`EmbeddedLog::open`]; with `wait_for_prepared` a roll waits for the next segment's
    /// preparation instead of starting an empty segment (tests use it to be deterministic).
    fn open_with(dir: &Path, config: &EmbeddedLogConfig, wait_for_prepared: bool) -> Result<Self, LogError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| LogError::Io { path, source }
        };
        let segments_dir = dir.join("segments");
        fs::create_dir_all(&segments_dir).map_err(io(&segments_dir))?;
        fs::create_dir_all(dir.join("consumers")).map_err(io(dir))?;
        let lock_path = dir.join("LOCK");
        let lock = File::create(&lock_path).map_err(io(&lock_path))?;
        lock.try_lock().map_err(|_| LogError::Io {
            path: lock_path.clone(),
            source: std::io::Error::new(ErrorKind::WouldBlock, "the log is in use by another livora process"),
        })?;

        // A preparation a crash interrupted: started again when needed.
        let prepared = segments_dir.join(PREPARED);
        match fs::remove_file(&prepared) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(io(&prepared)(e)),
            _ => {}
        }
        let segments = list_segments(&segments_dir)?;
        let (base, file, len, next) = match segments.last() {
            Some(&base) => {
                let path = segment_path(&segments_dir, base);
                let (count, valid_len) = scan_segment(&path)?;
                let file = OpenOptions::new().read(true).write(true).open(&path).map_err(io(&path))?;
                // Zeros after the last record are the segment's preallocated space; anything
                // else is a torn write, cut off (the segment then grows by appends).
                if !zeros_from(&file, valid_len).map_err(io(&path))? {
                    let actual = file.metadata().map_err(io(&path))?.len();
                    tracing::warn!(segment = %path.display(), cut_bytes = actual - valid_len, "cutting a torn tail off the event log");
                    file.set_len(valid_len).map_err(io(&path))?;
                    file.sync_all().map_err(io(&path))?;
                }
                (base, file, valid_len, base + count)
            }
            None => {
                let path = segment_path(&segments_dir, 0);
                let file = create_segment(&path, &segments_dir)?;
                (0, file, 0, 0)
            }
        };

        let (tx, rx) = mpsc::channel(8192);
        let (durable_tx, durable) = watch::channel(next);
        let mut writer = Writer {
            segments_dir,
            consumers_dir: dir.join("consumers"),
            config: config.clone(),
            file,
            base,
            len,
            next,
            durable: durable_tx,
            appended: Arc::new(AtomicU64::new(len)),
            prepare: None,
            wait_for_prepared,
        };
        writer.start_preparing();
        std::thread::Builder::new().name("livora-log-writer".into()).spawn(move || writer.run(rx)).map_err(io(dir))?;
        Ok(Self { dir: dir.to_owned(), tx, durable, _lock: lock })
    }

    /// The position one past the last durable record (the number of records ever appended).
    pub fn end(&self) -> Position {
        *self.durable.borrow()
    }
}

#[async_trait]
impl EventLog for EmbeddedLog {
    async fn append(&self, _client: &ClientId, record: Bytes) -> Result<Position, LogError> {
        if record.len() > MAX_RECORD_BYTES {
            return Err(LogError::TooLarge { size: record.len(), limit: MAX_RECORD_BYTES });
        }
        if record.is_empty() {
            // A zero length marks the end of a segment's records.
            return Err(LogError::Empty);
        }
        let (reply, rx) = oneshot::channel();
        self.tx.send(AppendRequest { payload: record, reply }).await.map_err(|_| LogError::Closed)?;
        rx.await.map_err(|_| LogError::Closed)?
    }

    async fn consumer(&self, name: &str) -> Result<Box<dyn LogConsumer>, LogError> {
        check_consumer_name(name)?;
        let pos_file = PositionFile::of(&self.dir, name);
        let next = pos_file.read()?.map_or(0, |p| p + 1);
        Ok(Box::new(EmbeddedConsumer {
            reader: Some(Reader::new(self.dir.join("segments"), next)),
            pos_file: Some(pos_file),
            durable: self.durable.clone(),
        }))
    }

    fn backend(&self) -> &'static str {
        "embedded"
    }

    fn is_available(&self) -> bool {
        !self.tx.is_closed()
    }
}

struct Writer {
    segments_dir: PathBuf,
    consumers_dir: PathBuf,
    config: EmbeddedLogConfig,
    file: File,
    base: Position,
    len: u64,
    next: Position,
    durable: watch::Sender<Position>,
    /// `len`, for the thread preparing the next segment (its pace).
    appended: Arc<AtomicU64>,
    /// The thread filling the next segment with zeros.
    prepare: Option<JoinHandle<std::io::Result<()>>>,
    wait_for_prepared: bool,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<AppendRequest>) {
        let mut group = Vec::new();
        let mut buf = Vec::with_capacity(MAX_GROUP_BYTES);
        while let Some(first) = rx.blocking_recv() {
            let mut bytes = first.payload.len();
            group.push(first);
            while bytes < MAX_GROUP_BYTES {
                let Ok(req) = rx.try_recv() else { break };
                bytes += req.payload.len();
                group.push(req);
            }
            let result = self.commit_group(&group, &mut buf);
            let failed = result.is_err();
            for (i, req) in group.drain(..).enumerate() {
                let answer = match &result {
                    Ok(first) => Ok(first + i as Position),
                    Err(e) => Err(LogError::Io {
                        path: self.segments_dir.clone(),
                        source: std::io::Error::new(e.kind(), e.to_string()),
                    }),
                };
                let _ = req.reply.send(answer);
            }
            if failed {
                // After a failed write or fsync the state of the file is unknown: stop taking
                // appends rather than risk acknowledging data that is not durable.
                tracing::error!("event log writer stopped after an i/o error; restart to recover");
                return;
            }
        }
    }

    /// Writes and syncs one group; returns the position of its first record.
    fn commit_group(&mut self, group: &[AppendRequest], buf: &mut Vec<u8>) -> std::io::Result<Position> {
        if self.len > 0 && self.len >= self.config.segment_bytes.0 {
            self.roll()?;
        }
        buf.clear();
        for req in group {
            let len = u32::try_from(req.payload.len()).map_err(|_| ErrorKind::InvalidInput)?;
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&crc32fast::hash(&req.payload).to_le_bytes());
            buf.extend_from_slice(&req.payload);
        }
        let started = Instant::now();
        let written = self.file.write_all_at(buf, self.len);
        let wrote = started.elapsed();
        let written = written.and_then(|()| self.file.sync_data());
        let took = started.elapsed();
        if took >= SLOW_COMMIT {
            // Every append of the group waited this long: say where it went.
            tracing::warn!(
                write_ms = wrote.as_millis() as u64,
                sync_ms = (took - wrote).as_millis() as u64,
                records = group.len(),
                bytes = buf.len(),
                "slow event log commit: {} ms (the disk's fdatasync, unless write_ms says otherwise)",
                took.as_millis()
            );
        }
        if let Err(e) = written {
            // Best effort: cut what may have been partly written so that a restart sees a clean tail.
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        self.len += buf.len() as u64;
        let first = self.next;
        self.next += group.len() as Position;
        self.durable.send_replace(self.next);
        self.appended.store(self.len, Ordering::Release);
        if let Some(prepare) = &self.prepare {
            prepare.thread().unpark();
        }
        Ok(first)
    }

    /// Starts filling the next segment with zeros, unless that is off or under way.
    fn start_preparing(&mut self) {
        if !self.config.preallocate || self.prepare.is_some() {
            return;
        }
        let (path, size, appended) =
            (self.segments_dir.join(PREPARED), self.config.segment_bytes.0, self.appended.clone());
        let spawned = std::thread::Builder::new()
            .name("livora-log-prepare".into())
            .spawn(move || prepare_segment(&path, size, &appended));
        match spawned {
            Ok(handle) => self.prepare = Some(handle),
            Err(e) => tracing::warn!(error = %e, "could not start preparing the next event log segment"),
        }
    }

    fn roll(&mut self) -> std::io::Result<()> {
        let path = segment_path(&self.segments_dir, self.next);
        let wait = self.wait_for_prepared;
        let prepared = match self.prepare.take_if(|h| wait || h.is_finished()).map(JoinHandle::join) {
            Some(Ok(Ok(()))) => true,
            Some(Ok(Err(e))) => {
                tracing::warn!(error = %e, "preparing the next event log segment failed; it grows by appends");
                false
            }
            Some(Err(_panic)) => false,
            // Not ready: the writer does not wait for it; the segment after this one takes it.
            None => false,
        };
        self.file = if prepared {
            fs::rename(self.segments_dir.join(PREPARED), &path)?;
            File::open(&self.segments_dir)?.sync_all()?;
            OpenOptions::new().read(true).write(true).open(&path)?
        } else {
            create_segment(&path, &self.segments_dir).map_err(|e| std::io::Error::other(e.to_string()))?
        };
        self.base = self.next;
        self.len = 0;
        self.appended.store(0, Ordering::Release);
        self.start_preparing();
        if let Err(e) = self.delete_consumed_segments() {
            tracing::warn!(error = %e, "event log retention failed; will retry at the next roll");
        }
        Ok(())
    }

    /// Deletes closed segments that every consumer has committed past and that are older than
    /// the retention.
    fn delete_consumed_segments(&self) -> std::io::Result<()> {
        let mut min_next = Position::MAX;
        for entry in fs::read_dir(&self.consumers_dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "pos") {
                let committed = PositionFile::new(path).read().map_err(|e| std::io::Error::other(e.to_string()))?;
                min_next = min_next.min(committed.map_or(0, |p| p + 1));
            }
        }
        if min_next == Position::MAX {
            return Ok(()); // no consumer yet: keep everything
        }
        let segments = list_segments(&self.segments_dir).map_err(|e| std::io::Error::other(e.to_string()))?;
        let cutoff = SystemTime::now() - self.config.retention;
        for pair in segments.windows(2) {
            let (base, next_base) = (pair[0], pair[1]);
            if next_base > min_next || next_base > self.base {
                break;
            }
            let path = segment_path(&self.segments_dir, base);
            if fs::metadata(&path)?.modified()? < cutoff {
                fs::remove_file(&path)?;
                tracing::info!(segment = %path.display(), "deleted consumed event log segment");
            }
        }
        Ok(())
    }
}

fn segment_path(dir: &Path, base: Position) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

fn create_segment(path: &Path, dir: &Path) -> Result<File, LogError> {
    let io = |source| LogError::Io { path: path.to_owned(), source };
    let file = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path).map_err(io)?;
    file.sync_all().map_err(io)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(file)
}

/// Writes a segment of `size` zero bytes at `path`, chunk by synced chunk, at most
/// [`PREPARE_AHEAD`] ahead of 5/4 of `appended` (the bytes of the current segment; the writer
/// unparks this thread when it grows). Gives up, leaving the file to the next start-up's
/// cleanup, when the writer is gone.
fn prepare_segment(path: &Path, size: u64, appended: &Arc<AtomicU64>) -> std::io::Result<()> {
    let mut file = File::create(path)?;
    let zeros = vec![0u8; PREPARE_CHUNK];
    let mut written = 0;
    while written < size {
        let allowed = PREPARE_AHEAD.saturating_add(appended.load(Ordering::Acquire).saturating_mul(5) / 4);
        if written >= allowed {
            if Arc::strong_count(appended) == 1 {
                return Err(std::io::Error::other("the log writer stopped"));
            }
            std::thread::park_timeout(Duration::from_millis(100));
            continue;
        }
        let n = (size - written).min(PREPARE_CHUNK as u64) as usize;
        file.write_all(&zeros[..n])?;
        file.sync_data()?;
        written += n as u64;
    }
    file.sync_all()
}

/// Whether every byte of `file` from `offset` on is zero.
fn zeros_from(file: &File, offset: u64) -> std::io::Result<bool> {
    let mut buf = vec![0u8; 1 << 20];
    let mut at = offset;
    loop {
        let n = file.read_at(&mut buf, at)?;
        if n == 0 {
            return Ok(true);
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
}

fn list_segments(dir: &Path) -> Result<Vec<Position>, LogError> {
    let io = |source| LogError::Io { path: dir.to_owned(), source };
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let name = entry.map_err(io)?.file_name();
        let name = name.to_string_lossy();
        if let Some(base) = name.strip_suffix(".log").and_then(|b| b.parse().ok()) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Counts the intact frames of a segment; returns (records, bytes up to the end of the last one).
fn scan_segment(path: &Path) -> Result<(u64, u64), LogError> {
    let file = File::open(path).map_err(|source| LogError::Io { path: path.to_owned(), source })?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let (mut count, mut offset) = (0, 0);
    let mut payload = Vec::new();
    while let Some(len) = read_frame(&mut reader, &mut payload) {
        count += 1;
        offset += (FRAME_HEADER + len) as u64;
    }
    Ok((count, offset))
}

/// Reads the next intact frame into `payload` and returns its length; `None` at the end of the
/// file or at a torn or corrupt frame.
fn read_frame(reader: &mut impl Read, payload: &mut Vec<u8>) -> Option<usize> {
    let mut header = [0u8; FRAME_HEADER];
    reader.read_exact(&mut header).ok()?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    // Zero: the preallocated space after the last record.
    if len == 0 || len > MAX_RECORD_BYTES {
        return None;
    }
    payload.resize(len, 0);
    reader.read_exact(payload).ok()?;
    (crc32fast::hash(payload) == crc).then_some(len)
}

/// A segment open for reading: its base, the reader, and the offset of the frame at `next`.
struct OpenSegment {
    base: Position,
    reader: BufReader<File>,
    offset: u64,
}

/// Sequential reader over the segments, positioned at `next`.
struct Reader {
    segments_dir: PathBuf,
    next: Position,
    current: Option<OpenSegment>,
}

impl Reader {
    fn new(segments_dir: PathBuf, next: Position) -> Self {
        Self { segments_dir, next, current: None }
    }

    /// Reads records from `self.next` up to (excluding) `end`, at most `max`.
    fn read(&mut self, end: Position, max: usize) -> Result<Vec<Delivery>, LogError> {
        let mut out = Vec::new();
        let mut reread = false;
        while self.next < end && out.len() < max {
            if self.current.is_none() {
                self.open_at(self.next)?;
            }
            let Some(open) = self.current.as_mut() else { break };
            let mut payload = Vec::new();
            match read_frame(&mut open.reader, &mut payload) {
                Some(len) => {
                    open.offset += (FRAME_HEADER + len) as u64;
                    out.push(Delivery { position: self.next, payload: Bytes::from(payload) });
                    self.next += 1;
                    reread = false;
                }
                // The buffer may hold what the active segment held when it was filled (zeros
                // where records are now): read the file again from the frame's offset.
                None if !reread => {
                    reread = true;
                    let offset = open.offset;
                    open.reader
                        .seek(SeekFrom::Start(offset))
                        .map_err(|source| LogError::Io { path: segment_path(&self.segments_dir, open.base), source })?;
                }
                // End of this segment: the record at `next` starts the following segment.
                None => {
                    reread = false;
                    self.open_at(self.next)?;
                }
            }
        }
        Ok(out)
    }

    /// Opens the segment holding `pos` and skips to it.
    fn open_at(&mut self, pos: Position) -> Result<(), LogError> {
        let bases = list_segments(&self.segments_dir)?;
        let Some(&base) = bases.iter().rev().find(|&&b| b <= pos) else {
            return Err(LogError::Io {
                path: self.segments_dir.clone(),
                source: std::io::Error::new(ErrorKind::NotFound, format!("position {pos} was deleted by retention")),
            });
        };
        if self.current.as_ref().is_some_and(|open| open.base == base) {
            // Already at the end of the newest segment holding `pos`: the record is not there.
            return Err(LogError::Io {
                path: segment_path(&self.segments_dir, base),
                source: std::io::Error::new(ErrorKind::UnexpectedEof, format!("record {pos} is missing")),
            });
        }
        let path = segment_path(&self.segments_dir, base);
        let file = File::open(&path).map_err(|source| LogError::Io { path: path.clone(), source })?;
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        reader.seek(SeekFrom::Start(0)).map_err(|source| LogError::Io { path: path.clone(), source })?;
        let mut scratch = Vec::new();
        let mut offset = 0;
        for _ in base..pos {
            let Some(len) = read_frame(&mut reader, &mut scratch) else {
                return Err(LogError::Io {
                    path,
                    source: std::io::Error::new(ErrorKind::UnexpectedEof, format!("record {pos} is missing")),
                });
            };
            offset += (FRAME_HEADER + len) as u64;
        }
        self.current = Some(OpenSegment { base, reader, offset });
        Ok(())
    }
}

struct EmbeddedConsumer {
    /// Taken while a blocking read runs.
    reader: Option<Reader>,
    /// Taken while a blocking commit runs.
    pos_file: Option<PositionFile>,
    durable: watch::Receiver<Position>,
}

#[async_trait]
impl LogConsumer for EmbeddedConsumer {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, LogError> {
        let next = self.reader.as_ref().map_or(0, |r| r.next);
        if *self.durable.borrow_and_update() <= next {
            let changed = tokio::time::timeout(wait, self.durable.wait_for(|&end| end > next)).await;
            match changed {
                Err(_elapsed) => return Ok(Vec::new()),
                Ok(Err(_closed)) => return Err(LogError::Closed),
                Ok(Ok(_)) => {}
            }
        }
        let end = *self.durable.borrow();
        let mut reader = self.reader.take().ok_or(LogError::Closed)?;
        let (reader, result) = tokio::task::spawn_blocking(move || {
            let result = reader.read(end, max);
            (reader, result)
        })
        .await
        .map_err(|_| LogError::Closed)?;
        self.reader = Some(reader);
        result
    }

    async fn commit(&mut self, position: Position) -> Result<(), LogError> {
        let mut pos_file = self.pos_file.take().ok_or(LogError::Closed)?;
        let (pos_file, written) = tokio::task::spawn_blocking(move || {
            let written = pos_file.write(position);
            (pos_file, written)
        })
        .await
        .map_err(|_| LogError::Closed)?;
        self.pos_file = Some(pos_file);
        written
    }
}

/// The committed position of a consumer: `<position, 20 digits> <CRC-32 of those digits, 8 hex
/// digits>\n`, [`POSITION_LINE`] bytes, overwritten in place and made durable with
/// `fdatasync`.
///
/// Replacing the file on every commit (a new file, synced, renamed over the old one, the
/// directory synced) changed the file system's metadata each time: each commit forced a journal
/// commit of its own, which the log's group commits (whose `fdatasync` of a growing segment
/// needs one too) can queue behind, and freed a block (a discard, on a file system mounted with
/// `discard`). The stream aggregator commits on every round, many times a second under load. A
/// line of fixed width written over itself changes no metadata that `fdatasync` must flush
/// (a quarter of the cost on our disk, BENCHMARKS.md), and lies within one disk sector, which
/// devices write whole; the CRC catches the device that does not, and such a file is refused
/// rather than guessed at. The file is created (once) by an atomic replace, and a file of the
/// earlier form (the position alone) is read and replaced the same way at its next commit.
struct PositionFile {
    path: PathBuf,
    /// Open for writing once the file has the fixed-width form.
    file: Option<File>,
}

/// The length of a position line: 20 digits, a space, 8 hex digits, a newline.
const POSITION_LINE: usize = 30;

impl PositionFile {
    fn new(path: PathBuf) -> Self {
        Self { path, file: None }
    }

    /// The position file of consumer `name` of the log in `dir`.
    fn of(dir: &Path, name: &str) -> Self {
        Self::new(dir.join("consumers").join(format!("{name}.pos")))
    }

    /// The committed position; `None` when nothing was committed yet.
    fn read(&self) -> Result<Option<Position>, LogError> {
        let invalid = |why: String| LogError::Io {
            path: self.path.clone(),
            source: std::io::Error::new(ErrorKind::InvalidData, why),
        };
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LogError::Io { path: self.path.clone(), source }),
        };
        let line = text.trim_end();
        let digits = match line.split_once(' ') {
            None => line, // the earlier form: the position alone
            Some((digits, crc)) => {
                let stored = u32::from_str_radix(crc, 16).map_err(|e| invalid(format!("bad checksum `{crc}`: {e}")))?;
                if stored != crc32fast::hash(digits.as_bytes()) {
                    return Err(invalid(format!(
                        "the committed position `{digits}` does not match its checksum (a torn or corrupt write), \
                         so where the consumer stopped is unknown: write the position it had reached into the \
                         file (the number alone), or delete the file to read the retained log from its start"
                    )));
                }
                digits
            }
        };
        digits.parse::<Position>().map(Some).map_err(|e| invalid(format!("bad position `{digits}`: {e}")))
    }

    /// Commits `position`: in place once the file has the fixed-width form, else by replacing it.
    fn write(&mut self, position: Position) -> Result<(), LogError> {
        let digits = format!("{position:020}");
        let line = format!("{digits} {:08x}\n", crc32fast::hash(digits.as_bytes()));
        debug_assert_eq!(line.len(), POSITION_LINE);
        let io = |source| LogError::Io { path: self.path.clone(), source };
        let file = match self.file.take() {
            Some(file) => file,
            None if fs::metadata(&self.path).is_ok_and(|m| m.len() == POSITION_LINE as u64) => {
                OpenOptions::new().write(true).open(&self.path).map_err(io)?
            }
            None => {
                write_atomically(&self.path, line.as_bytes())?;
                self.file = Some(OpenOptions::new().write(true).open(&self.path).map_err(io)?);
                return Ok(());
            }
        };
        let written = file.write_all_at(line.as_bytes(), 0).and_then(|()| file.sync_data()).map_err(io);
        self.file = Some(file);
        written
    }
}

/// Replaces `path` with `contents` so that a crash leaves either the old or the new file.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), LogError> {
    let io = |source| LogError::Io { path: path.to_owned(), source };
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(io)?;
    file.write_all(contents).and_then(|()| file.sync_all()).map_err(io)?;
    fs::rename(&tmp, path).map_err(io)?;
    if let Some(parent) = path.parent() {
        File::open(parent).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
