//! A WAL writer like `pg_receivewal`'s, without the network: streamed WAL (the start LSN and
//! bytes of each `XLogData` message) goes into segment files.
//!
//! Layout, as `pg_receivewal` leaves it:
//!
//! - each segment is a file of `wal_segment_size` bytes named by timeline and segment
//!   number (`000000010000000000000003`);
//! - the segment being written is `<name>.partial`, created at full size, and renamed to
//!   its final name once its last byte is written and synced;
//! - `<timeline>.history` files are saved as the server sends them;
//! - a restart resumes from the files already there ([`resume_position`]): after the
//!   highest complete segment, or at the start of the highest partial one (which is
//!   streamed again from its beginning, because its tail cannot be trusted).
//!
//! Durability: a completed segment is fsynced before its rename and the directory after
//! it; the partial segment is fsynced on [`WalWriter::sync`], when
//! [`WalWriter::sync_if_due`] finds the configured interval elapsed, and on
//! [`WalWriter::close`]. [`WalWriter::flush_position`] is what may be reported to the
//! server as flushed.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use walstream_proto::{Lsn, TimelineId};

use crate::error::{Error, WalError};

/// The suffix of the segment being written.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// The smallest and largest segment sizes PostgreSQL allows.
const MIN_SEGMENT: u64 = 1 << 20;
const MAX_SEGMENT: u64 = 1 << 30;

#[derive(Debug)]
struct OpenSegment {
    file: File,
    name: String,
}

/// Writes streamed WAL into segment files like `pg_receivewal` (see the crate docs).
///
/// Call order: [`WalWriter::write`] for each `XLogData` in order,
/// [`WalWriter::sync_if_due`] whenever convenient (e.g. before each status update),
/// [`WalWriter::switch_timeline`] when the server ends a timeline, [`WalWriter::close`] at
/// the end.
#[derive(Debug)]
pub struct WalWriter {
    dir: PathBuf,
    segment_size: u64,
    timeline: TimelineId,
    current: Option<OpenSegment>,
    position: Option<Lsn>,
    flushed: Option<Lsn>,
    sync_interval: Option<Duration>,
    last_sync: Option<Instant>,
    dirty: bool,
    completed: Vec<String>,
}

fn check_segment_size(size: u64) -> Result<(), WalError> {
    if size.is_power_of_two() && (MIN_SEGMENT..=MAX_SEGMENT).contains(&size) {
        Ok(())
    } else {
        Err(WalError::InvalidSegmentSize(size))
    }
}

impl WalWriter {
    /// A writer for `dir` (created if missing) with the server's `wal_segment_size`, starting
    /// on `timeline`.
    pub fn new(
        dir: impl Into<PathBuf>,
        segment_size: u64,
        timeline: TimelineId,
    ) -> Result<Self, Error> {
        check_segment_size(segment_size)?;
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| Error::io("creating the WAL directory", &dir, e))?;
        Ok(Self {
            dir,
            segment_size,
            timeline,
            current: None,
            position: None,
            flushed: None,
            sync_interval: None,
            last_sync: None,
            dirty: false,
            completed: Vec::new(),
        })
    }

    /// Syncs the partial segment at most this long after a write
    /// ([`WalWriter::sync_if_due`]); without it only completed segments and
    /// [`WalWriter::sync`] sync.
    #[must_use]
    pub fn with_sync_interval(mut self, interval: Duration) -> Self {
        self.sync_interval = Some(interval);
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current timeline.
    pub fn timeline(&self) -> TimelineId {
        self.timeline
    }

    /// The segment size.
    pub fn segment_size(&self) -> u64 {
        self.segment_size
    }

    /// The end of what was written (the next byte expected), once something was written.
    pub fn write_position(&self) -> Option<Lsn> {
        self.position
    }

    /// The end of what is known durable.
    pub fn flush_position(&self) -> Option<Lsn> {
        self.flushed
    }

    /// Names of segments completed since the last call.
    pub fn take_completed(&mut self) -> Vec<String> {
        std::mem::take(&mut self.completed)
    }

    /// Writes `data`, which starts at `start`. The first write of a segment must start at the
    /// segment's beginning, later ones exactly where the previous one ended.
    pub fn write(&mut self, start: Lsn, mut data: &[u8]) -> Result<(), Error> {
        if let Some(expected) = self.position {
            if expected != start {
                return Err(WalError::Gap {
                    expected,
                    got: start,
                }
                .into());
            }
        }
        let mut at = start;
        while !data.is_empty() {
            let offset = at
                .segment_offset(self.segment_size)
                .ok_or(WalError::Overflow)?;
            if self.current.is_none() {
                if offset != 0 {
                    return Err(WalError::NotAtSegmentStart { got: at }.into());
                }
                self.open_segment(at)?;
            }
            let room = self.segment_size - offset;
            let take = usize::try_from(room).map_or(data.len(), |r| r.min(data.len()));
            let (head, rest) = data.split_at(take);
            let seg = self.current.as_mut().ok_or(WalError::Overflow)?;
            seg.file
                .write_all(head)
                .map_err(|e| Error::io("writing a WAL segment", self.dir.join(&seg.name), e))?;
            self.dirty = true;
            data = rest;
            at = at
                .checked_add(u64::try_from(take).map_err(|_| WalError::Overflow)?)
                .ok_or(WalError::Overflow)?;
            self.position = Some(at);
            if at.segment_offset(self.segment_size) == Some(0) {
                self.complete_segment()?;
            }
        }
        if self.position.is_none() {
            self.position = Some(start);
        }
        Ok(())
    }

    fn open_segment(&mut self, start: Lsn) -> Result<(), Error> {
        let name = start
            .wal_file_name(self.timeline, self.segment_size)
            .ok_or(WalError::Overflow)?;
        let path = self.dir.join(format!("{name}{PARTIAL_SUFFIX}"));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("creating a WAL segment", &path, e))?;
        // Full size from the start, like pg_receivewal's zero-padded partial files.
        file.set_len(self.segment_size)
            .map_err(|e| Error::io("sizing a WAL segment", &path, e))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io("seeking in a WAL segment", &path, e))?;
        self.current = Some(OpenSegment { file, name });
        Ok(())
    }

    fn complete_segment(&mut self) -> Result<(), Error> {
        let Some(seg) = self.current.take() else {
            return Ok(());
        };
        let partial = self.dir.join(format!("{}{PARTIAL_SUFFIX}", seg.name));
        let done = self.dir.join(&seg.name);
        seg.file
            .sync_all()
            .map_err(|e| Error::io("syncing a WAL segment", &partial, e))?;
        drop(seg.file);
        fs::rename(&partial, &done)
            .map_err(|e| Error::io("renaming a completed WAL segment", &done, e))?;
        sync_dir(&self.dir)?;
        self.flushed = self.position;
        self.dirty = false;
        self.completed.push(seg.name);
        Ok(())
    }

    /// Fsyncs the partial segment now.
    pub fn sync(&mut self, now: Instant) -> Result<(), Error> {
        if let Some(seg) = &self.current {
            if self.dirty {
                seg.file
                    .sync_data()
                    .map_err(|e| Error::io("syncing a WAL segment", self.dir.join(&seg.name), e))?;
            }
        }
        self.dirty = false;
        self.flushed = self.position;
        self.last_sync = Some(now);
        Ok(())
    }

    /// Fsyncs if there are unsynced writes and the sync interval has elapsed since the last
    /// sync. Returns whether it synced.
    pub fn sync_if_due(&mut self, now: Instant) -> Result<bool, Error> {
        let Some(interval) = self.sync_interval else {
            return Ok(false);
        };
        if !self.dirty {
            return Ok(false);
        }
        let due = self
            .last_sync
            .is_none_or(|t| now.saturating_duration_since(t) >= interval);
        if due {
            self.sync(now)?;
        }
        Ok(due)
    }

    /// When the next [`WalWriter::sync_if_due`] would sync, if anything is pending.
    pub fn sync_deadline(&self) -> Option<Instant> {
        let interval = self.sync_interval?;
        if !self.dirty {
            return None;
        }
        Some(self.last_sync.map_or_else(Instant::now, |t| t + interval))
    }

    /// The server ended the current timeline: the partial segment is synced and left as
    /// `.partial`, and writing continues on `next` from the start of the segment holding
    /// `next_start` (the server re-sends that segment on the new timeline).
    pub fn switch_timeline(&mut self, next: TimelineId, now: Instant) -> Result<(), Error> {
        self.close(now)?;
        self.timeline = next;
        self.position = None;
        Ok(())
    }

    /// Syncs and closes the partial segment (it stays `.partial`).
    pub fn close(&mut self, now: Instant) -> Result<(), Error> {
        self.sync(now)?;
        self.current = None;
        Ok(())
    }

    /// Saves a timeline history file (`TIMELINE_HISTORY`'s content) atomically.
    pub fn write_history(&self, timeline: TimelineId, content: &[u8]) -> Result<PathBuf, Error> {
        let name = format!("{:08X}.history", timeline.0);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut f =
            File::create(&tmp).map_err(|e| Error::io("creating a history file", &tmp, e))?;
        f.write_all(content)
            .map_err(|e| Error::io("writing a history file", &tmp, e))?;
        f.sync_all()
            .map_err(|e| Error::io("syncing a history file", &tmp, e))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(|e| Error::io("renaming a history file", &path, e))?;
        sync_dir(&self.dir)?;
        Ok(path)
    }
}

/// Fsyncs a directory so that renames in it are durable (a no-op where directories cannot
/// be opened).
pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    #[cfg(unix)]
    {
        let d = File::open(dir).map_err(|e| Error::io("opening a directory to sync it", dir, e))?;
        d.sync_all()
            .map_err(|e| Error::io("syncing a directory", dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Where streaming should resume from the segment files in `dir`: the timeline and
/// segment-start LSN after the highest complete segment, or at the start of the highest
/// `.partial` one; `None` for a directory without WAL files. Files of another size than
/// `segment_size` are ignored, as are names that are not WAL segments.
pub fn resume_position(dir: &Path, segment_size: u64) -> Result<Option<(TimelineId, Lsn)>, Error> {
    check_segment_size(segment_size)?;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("reading the WAL directory", dir, e)),
    };
    let mut best: Option<(Lsn, TimelineId, bool)> = None;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("reading the WAL directory", dir, e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let (base, partial) = match name.strip_suffix(PARTIAL_SUFFIX) {
            Some(b) => (b, true),
            None => (name.as_str(), false),
        };
        let Some((tli, start)) = Lsn::from_wal_file_name(base, segment_size) else {
            continue;
        };
        let size = entry
            .metadata()
            .map_err(|e| Error::io("reading a WAL file", entry.path(), e))?
            .len();
        if size != segment_size {
            continue;
        }
        let candidate = (start, tli, partial);
        let better = match best {
            None => true,
            // Higher segment wins; on the same segment the higher timeline, then a complete
            // file over a partial one.
            Some((s, t, p)) => (start, tli, !partial) > (s, t, !p),
        };
        if better {
            best = Some(candidate);
        }
    }
    Ok(match best {
        None => None,
        Some((start, tli, true)) => Some((tli, start)),
        Some((start, tli, false)) => Some((
            tli,
            start.checked_add(segment_size).ok_or(WalError::Overflow)?,
        )),
    })
}

#[cfg(test)]
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]
mod tests {
    use super::*;

    const SEG: u64 = 1 << 20;

    fn pattern(start: u64, len: usize) -> Vec<u8> {
        (0..len as u64).map(|i| ((start + i) % 253) as u8).collect()
    }

    #[test]
    fn segments_fill_complete_and_rename() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalWriter::new(dir.path(), SEG, TimelineId(1)).unwrap();
        let start = 3 * SEG;
        let total = 2 * SEG as usize + 1000;
        let mut at = start;
        for chunk in [1usize, 8191, 100_000, SEG as usize, 500_000] {
            let len = chunk.min(start as usize + total - at as usize);
            if len == 0 {
                break;
            }
            w.write(Lsn(at), &pattern(at, len)).unwrap();
            at += len as u64;
        }
        let rest = (start + total as u64 - at) as usize;
        w.write(Lsn(at), &pattern(at, rest)).unwrap();
        assert_eq!(
            w.take_completed(),
            ["000000010000000000000003", "000000010000000000000004"]
        );
        assert_eq!(w.write_position(), Some(Lsn(5 * SEG + 1000)));
        assert_eq!(w.flush_position(), Some(Lsn(5 * SEG)));
        let full = fs::read(dir.path().join("000000010000000000000004")).unwrap();
        assert_eq!(full, pattern(4 * SEG, SEG as usize));
        let partial = fs::read(dir.path().join("000000010000000000000005.partial")).unwrap();
        assert_eq!(partial.len() as u64, SEG);
        assert_eq!(&partial[..1000], &pattern(5 * SEG, 1000)[..]);
        assert!(partial[1000..].iter().all(|&b| b == 0));
        w.close(Instant::now()).unwrap();
        assert_eq!(w.flush_position(), Some(Lsn(5 * SEG + 1000)));
        assert_eq!(
            resume_position(dir.path(), SEG).unwrap(),
            Some((TimelineId(1), Lsn(5 * SEG)))
        );
    }

    #[test]
    fn gaps_and_mid_segment_starts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalWriter::new(dir.path(), SEG, TimelineId(1)).unwrap();
        let err = w.write(Lsn(SEG + 8), b"x").unwrap_err();
        assert!(
            matches!(err, Error::Wal(WalError::NotAtSegmentStart { .. })),
            "{err:?}"
        );
        w.write(Lsn(SEG), b"abc").unwrap();
        let err = w.write(Lsn(SEG + 4), b"x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "WAL data at 0/100004 but 0/100003 was expected next"
        );
        assert!(matches!(
            WalWriter::new(dir.path(), 3 << 20, TimelineId(1)),
            Err(Error::Wal(WalError::InvalidSegmentSize(_)))
        ));
    }

    #[test]
    fn sync_interval_and_timeline_switch() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let mut w = WalWriter::new(dir.path(), SEG, TimelineId(1))
            .unwrap()
            .with_sync_interval(Duration::from_secs(10));
        assert!(!w.sync_if_due(t0).unwrap());
        w.write(Lsn(0), b"abcd").unwrap();
        assert_eq!(w.flush_position(), None);
        assert!(w.sync_if_due(t0).unwrap());
        assert_eq!(w.flush_position(), Some(Lsn(4)));
        w.write(Lsn(4), b"ef").unwrap();
        assert!(!w.sync_if_due(t0 + Duration::from_secs(5)).unwrap());
        assert_eq!(w.sync_deadline(), Some(t0 + Duration::from_secs(10)));
        assert!(w.sync_if_due(t0 + Duration::from_secs(10)).unwrap());
        assert_eq!(w.flush_position(), Some(Lsn(6)));

        w.switch_timeline(TimelineId(2), t0).unwrap();
        w.write_history(TimelineId(2), b"1\t0/6\tno recovery target specified\n")
            .unwrap();
        w.write(Lsn(0), b"abcdef-on-2").unwrap();
        w.close(t0).unwrap();
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "000000010000000000000000.partial",
                "00000002.history",
                "000000020000000000000000.partial"
            ]
        );
        assert_eq!(
            resume_position(dir.path(), SEG).unwrap(),
            Some((TimelineId(2), Lsn(0)))
        );
    }

    #[test]
    fn resume_from_directory_contents() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(resume_position(dir.path(), SEG).unwrap(), None);
        assert_eq!(
            resume_position(&dir.path().join("missing"), SEG).unwrap(),
            None
        );
        let mk = |name: &str, size: u64| {
            File::create(dir.path().join(name))
                .unwrap()
                .set_len(size)
                .unwrap()
        };
        mk("000000010000000000000002", SEG);
        mk("000000010000000000000007", SEG - 1); // wrong size: ignored
        mk("00000001.history", 10);
        mk("junk", SEG);
        assert_eq!(
            resume_position(dir.path(), SEG).unwrap(),
            Some((TimelineId(1), Lsn(3 * SEG)))
        );
        mk("000000010000000000000003.partial", SEG);
        assert_eq!(
            resume_position(dir.path(), SEG).unwrap(),
            Some((TimelineId(1), Lsn(3 * SEG)))
        );
        mk("000000020000000000000003.partial", SEG);
        assert_eq!(
            resume_position(dir.path(), SEG).unwrap(),
            Some((TimelineId(2), Lsn(3 * SEG)))
        );
        mk("000000020000000000000003", SEG);
        assert_eq!(
            resume_position(dir.path(), SEG).unwrap(),
            Some((TimelineId(2), Lsn(4 * SEG)))
        );
    }

    #[test]
    fn resume_then_rewrite_partial_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalWriter::new(dir.path(), SEG, TimelineId(1)).unwrap();
        w.write(Lsn(0), &pattern(0, 5000)).unwrap();
        w.close(Instant::now()).unwrap();
        let (tli, at) = resume_position(dir.path(), SEG).unwrap().unwrap();
        let mut w = WalWriter::new(dir.path(), SEG, tli).unwrap();
        w.write(at, &pattern(0, SEG as usize)).unwrap();
        assert_eq!(
            fs::read(dir.path().join("000000010000000000000000")).unwrap(),
            pattern(0, SEG as usize)
        );
        assert!(!dir.path().join("000000010000000000000000.partial").exists());
    }
}
