//! A streaming tar reader (sans-IO) and the sinks built on it: extraction to a directory and
//! writing the archive as it is.
//!
//! [`TarReader`] is fed chunks of any size and reports members to a [`TarVisitor`]; it holds
//! at most one 512-byte header and one bounded metadata member (GNU long name or pax
//! extended header) in memory, never member data. It understands what PostgreSQL's
//! `BASE_BACKUP` emits (ustar headers, base-256 sizes for members over 8 GiB) and also
//! ustar prefixes, GNU `L`/`K` long names and pax `path`/`linkpath`/`size` records.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, TarError};

/// Size of a tar block.
pub(crate) const BLOCK: usize = 512;
const BLOCK_U64: u64 = 512;

/// The default maximum size of a GNU long-name or pax extended-header member.
pub(crate) const DEFAULT_MAX_METADATA: u64 = 1024 * 1024;

/// What a tar member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file (`0`, NUL or `7`).
    File,
    /// A directory (`5`).
    Directory,
    /// A symbolic link (`2`).
    Symlink,
    /// Anything else (hard link, device, FIFO, ...), with its type flag.
    Other(u8),
}

/// One member's header, after long-name and pax overrides are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry {
    /// The member name as written in the archive (not yet checked for safety).
    pub path: String,
    /// Its type.
    pub kind: EntryKind,
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
    /// Size of the member's data.
    pub size: u64,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: u64,
    /// The link target of a symbolic link.
    pub link_target: Option<String>,
}

/// Receives what a [`TarReader`] finds, in order: for each member `begin_entry`, then
/// `entry_data` zero or more times (exactly `size` bytes in total), then `end_entry`.
pub trait TarVisitor {
    /// A member starts.
    fn begin_entry(&mut self, entry: &TarEntry) -> Result<(), Error>;
    /// Some of the current member's data.
    fn entry_data(&mut self, chunk: &[u8]) -> Result<(), Error>;
    /// The current member is complete.
    fn end_entry(&mut self) -> Result<(), Error>;
}

/// A visitor that ignores everything (used to observe an archive's structure).
#[derive(Debug, Default, Clone, Copy)]
pub struct NullVisitor;

impl TarVisitor for NullVisitor {
    fn begin_entry(&mut self, _: &TarEntry) -> Result<(), Error> {
        Ok(())
    }
    fn entry_data(&mut self, _: &[u8]) -> Result<(), Error> {
        Ok(())
    }
    fn end_entry(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meta {
    LongName,
    LongLink,
    Pax,
    GlobalPax,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Filling a header block.
    Header,
    /// Passing `remaining` data bytes of a member to the visitor, then `pad` bytes skipped.
    Data { remaining: u64, pad: u64 },
    /// Accumulating a metadata member.
    Meta {
        kind: Meta,
        remaining: u64,
        pad: u64,
    },
    /// Skipping padding.
    Pad { remaining: u64 },
    /// One zero block seen; a second ends the archive.
    OneZero,
    /// End-of-archive seen; the rest is ignored.
    Done,
}

/// The incremental tar parser.
///
/// Call [`TarReader::feed`] with each chunk as it arrives and [`TarReader::finish`] at the
/// end of the stream. Errors are sticky in the sense that after one the reader must not be
/// fed again.
#[derive(Debug)]
pub struct TarReader {
    state: State,
    header: Vec<u8>,
    meta: Vec<u8>,
    max_metadata: u64,
    offset: u64,
    next_path: Option<String>,
    next_link: Option<String>,
    next_size: Option<u64>,
    in_entry: bool,
}

impl Default for TarReader {
    fn default() -> Self {
        Self::new()
    }
}

impl TarReader {
    /// A reader at the start of an archive.
    pub fn new() -> Self {
        Self {
            state: State::Header,
            header: Vec::with_capacity(BLOCK),
            meta: Vec::new(),
            max_metadata: DEFAULT_MAX_METADATA,
            offset: 0,
            next_path: None,
            next_link: None,
            next_size: None,
            in_entry: false,
        }
    }

    /// Sets the maximum size of a metadata member (GNU long name, pax header).
    #[must_use]
    pub fn with_max_metadata(mut self, max: u64) -> Self {
        self.max_metadata = max;
        self
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// True once the end-of-archive marker (two zero blocks) was read.
    pub fn saw_trailer(&self) -> bool {
        self.state == State::Done
    }

    /// Parses `data`, reporting members to `visitor`.
    pub fn feed(&mut self, mut data: &[u8], visitor: &mut dyn TarVisitor) -> Result<(), Error> {
        while !data.is_empty() {
            match self.state {
                State::Done => {
                    self.offset = self.offset.saturating_add(len_u64(data.len()));
                    return Ok(());
                }
                State::Header | State::OneZero => {
                    let want = BLOCK - self.header.len();
                    let take = want.min(data.len());
                    let (head, rest) = data.split_at(take);
                    self.header.extend_from_slice(head);
                    data = rest;
                    if self.header.len() == BLOCK {
                        let block = std::mem::take(&mut self.header);
                        let at = self.offset;
                        self.offset += BLOCK_U64;
                        self.header_block(&block, at, visitor)?;
                        self.header = block;
                        self.header.clear();
                    }
                }
                State::Data { remaining, pad } => {
                    let take = take_len(remaining, data.len());
                    let (head, rest) = data.split_at(take);
                    visitor.entry_data(head)?;
                    data = rest;
                    let remaining = remaining - len_u64(take);
                    self.offset += len_u64(take);
                    if remaining == 0 {
                        self.in_entry = false;
                        visitor.end_entry()?;
                        self.state = after_pad(pad);
                    } else {
                        self.state = State::Data { remaining, pad };
                    }
                }
                State::Meta {
                    kind,
                    remaining,
                    pad,
                } => {
                    let take = take_len(remaining, data.len());
                    let (head, rest) = data.split_at(take);
                    self.meta.extend_from_slice(head);
                    data = rest;
                    let remaining = remaining - len_u64(take);
                    self.offset += len_u64(take);
                    if remaining == 0 {
                        self.apply_meta(kind)?;
                        self.state = after_pad(pad);
                    } else {
                        self.state = State::Meta {
                            kind,
                            remaining,
                            pad,
                        };
                    }
                }
                State::Pad { remaining } => {
                    let take = take_len(remaining, data.len());
                    data = data.get(take..).unwrap_or_default();
                    self.offset += len_u64(take);
                    let remaining = remaining - len_u64(take);
                    self.state = if remaining == 0 {
                        State::Header
                    } else {
                        State::Pad { remaining }
                    };
                }
            }
        }
        Ok(())
    }

    /// Ends the stream: succeeds if the archive ended between members (with or without the
    /// end-of-archive marker; PostgreSQL 14 does not send one), fails if it was cut inside a
    /// member.
    pub fn finish(&mut self) -> Result<(), Error> {
        let clean = match self.state {
            State::Done | State::OneZero => self.header.is_empty(),
            State::Header => self.header.is_empty() && !self.in_entry && self.next_path.is_none(),
            State::Pad { .. } => true,
            State::Data { .. } | State::Meta { .. } => false,
        };
        if clean {
            Ok(())
        } else {
            Err(TarError::Truncated {
                offset: self.offset + len_u64(self.header.len()),
            }
            .into())
        }
    }

    fn header_block(
        &mut self,
        block: &[u8],
        at: u64,
        visitor: &mut dyn TarVisitor,
    ) -> Result<(), Error> {
        if block.iter().all(|&b| b == 0) {
            self.state = match self.state {
                State::OneZero => State::Done,
                _ => State::OneZero,
            };
            return Ok(());
        }
        if self.state == State::OneZero {
            return Err(TarError::InvalidHeader {
                offset: at,
                reason: "member after a zero block",
            }
            .into());
        }
        let h = Header::parse(block, at)?;
        let size = self.next_size.take().unwrap_or(h.size);
        let pad = padding(size);
        let meta = match h.typeflag {
            b'L' => Some(Meta::LongName),
            b'K' => Some(Meta::LongLink),
            b'x' => Some(Meta::Pax),
            b'g' => Some(Meta::GlobalPax),
            _ => None,
        };
        if let Some(kind) = meta {
            if size > self.max_metadata {
                return Err(TarError::MetadataTooLarge {
                    len: size,
                    max: self.max_metadata,
                }
                .into());
            }
            self.meta.clear();
            self.state = if size == 0 {
                self.apply_meta(kind)?;
                State::Header
            } else {
                State::Meta {
                    kind,
                    remaining: size,
                    pad,
                }
            };
            return Ok(());
        }
        let path = match self.next_path.take() {
            Some(p) => p,
            None => h.full_name(at)?,
        };
        let link_target = match self.next_link.take() {
            Some(l) => Some(l),
            None if h.typeflag == b'2' || h.typeflag == b'1' => Some(h.link_name(at)?),
            None => None,
        };
        let kind = match h.typeflag {
            b'0' | 0 | b'7' => EntryKind::File,
            b'5' => EntryKind::Directory,
            b'2' => EntryKind::Symlink,
            other => EntryKind::Other(other),
        };
        // Only regular files carry data; a directory or link never does.
        let size = if kind == EntryKind::File || matches!(kind, EntryKind::Other(_)) {
            size
        } else {
            0
        };
        let entry = TarEntry {
            path,
            kind,
            mode: h.mode & 0o7777,
            size,
            mtime: h.mtime,
            link_target,
        };
        visitor.begin_entry(&entry)?;
        if size == 0 {
            visitor.end_entry()?;
            self.state = State::Header;
        } else {
            self.in_entry = true;
            self.state = State::Data {
                remaining: size,
                pad: padding(size),
            };
        }
        Ok(())
    }

    fn apply_meta(&mut self, kind: Meta) -> Result<(), Error> {
        let meta = std::mem::take(&mut self.meta);
        let at = self.offset;
        match kind {
            Meta::LongName => self.next_path = Some(c_string(&meta, at, "long name is not UTF-8")?),
            Meta::LongLink => self.next_link = Some(c_string(&meta, at, "long link is not UTF-8")?),
            Meta::GlobalPax => {}
            Meta::Pax => {
                for (key, value) in parse_pax(&meta, at)? {
                    match key {
                        "path" => self.next_path = Some(value.to_owned()),
                        "linkpath" => self.next_link = Some(value.to_owned()),
                        "size" => {
                            let n = value.parse::<u64>().map_err(|_| TarError::InvalidHeader {
                                offset: at,
                                reason: "pax size is not a number",
                            })?;
                            self.next_size = Some(n);
                        }
                        _ => {}
                    }
                }
            }
        }
        self.meta = meta;
        self.meta.clear();
        Ok(())
    }
}

fn after_pad(pad: u64) -> State {
    if pad == 0 {
        State::Header
    } else {
        State::Pad { remaining: pad }
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK_U64 - size % BLOCK_U64) % BLOCK_U64
}

fn len_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// How many of `available` bytes to take when `remaining` are wanted.
fn take_len(remaining: u64, available: usize) -> usize {
    usize::try_from(remaining).map_or(available, |r| r.min(available))
}

fn c_string(bytes: &[u8], at: u64, reason: &'static str) -> Result<String, TarError> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let s = bytes.get(..end).unwrap_or_default();
    std::str::from_utf8(s)
        .map(str::to_owned)
        .map_err(|_| TarError::InvalidHeader { offset: at, reason })
}

/// Parses pax records: `"<len> <key>=<value>\n"`, `len` counting the whole record.
fn parse_pax(mut data: &[u8], at: u64) -> Result<Vec<(&str, &str)>, TarError> {
    let bad = |reason| TarError::InvalidHeader { offset: at, reason };
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.iter().all(|&b| b == 0) {
            break;
        }
        let space = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| bad("pax record without length"))?;
        let len: usize = std::str::from_utf8(data.get(..space).unwrap_or_default())
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("pax record length is not a number"))?;
        let record = data
            .get(..len)
            .ok_or_else(|| bad("pax record longer than the header"))?;
        let body = record
            .get(space + 1..)
            .ok_or_else(|| bad("pax record too short"))?;
        let body = body
            .strip_suffix(b"\n")
            .ok_or_else(|| bad("pax record without newline"))?;
        let body = std::str::from_utf8(body).map_err(|_| bad("pax record is not UTF-8"))?;
        let (key, value) = body
            .split_once('=')
            .ok_or_else(|| bad("pax record without '='"))?;
        out.push((key, value));
        data = data.get(len..).unwrap_or_default();
    }
    Ok(out)
}

/// The fields of one header block.
struct Header<'a> {
    block: &'a [u8],
    mode: u32,
    size: u64,
    mtime: u64,
    typeflag: u8,
}

fn field(block: &[u8], start: usize, len: usize) -> &[u8] {
    block.get(start..start + len).unwrap_or_default()
}

/// Parses a numeric header field: octal text, or base-256 when the high bit of the first
/// byte is set (GNU and PostgreSQL for values that do not fit in octal).
fn number(f: &[u8], at: u64, reason: &'static str) -> Result<u64, TarError> {
    let bad = TarError::InvalidHeader { offset: at, reason };
    match f.first() {
        Some(&first) if first & 0x80 != 0 => {
            if first & 0x40 != 0 {
                return Err(bad); // negative
            }
            let mut v: u64 = u64::from(first & 0x3f);
            for &b in f.get(1..).unwrap_or_default() {
                v = v
                    .checked_mul(256)
                    .and_then(|v| v.checked_add(u64::from(b)))
                    .ok_or(bad.clone())?;
            }
            Ok(v)
        }
        _ => {
            let mut v: u64 = 0;
            let mut digits = f.iter().skip_while(|&&b| b == b' ' || b == 0).peekable();
            if digits.peek().is_none() {
                return Ok(0);
            }
            for &b in digits {
                match b {
                    b'0'..=b'7' => {
                        v = v
                            .checked_mul(8)
                            .and_then(|v| v.checked_add(u64::from(b - b'0')))
                            .ok_or(bad.clone())?;
                    }
                    b' ' | 0 => break,
                    _ => return Err(bad),
                }
            }
            Ok(v)
        }
    }
}

impl<'a> Header<'a> {
    fn parse(block: &'a [u8], at: u64) -> Result<Self, TarError> {
        let stored = number(field(block, 148, 8), at, "checksum field is not a number")?;
        let mut sum: u64 = 0;
        for (i, &b) in block.iter().enumerate() {
            sum += if (148..156).contains(&i) {
                u64::from(b' ')
            } else {
                u64::from(b)
            };
        }
        if sum != stored {
            // Some historic tars sum signed bytes; accept that too.
            let mut signed: i64 = 0;
            for (i, &b) in block.iter().enumerate() {
                signed += if (148..156).contains(&i) {
                    i64::from(b' ')
                } else {
                    i64::from(i8::from_ne_bytes([b]))
                };
            }
            if u64::try_from(signed).ok() != Some(stored) {
                return Err(TarError::BadChecksum { offset: at });
            }
        }
        let mode = number(field(block, 100, 8), at, "mode is not a number")?;
        let mode = u32::try_from(mode & 0o7777).unwrap_or(0);
        Ok(Self {
            block,
            mode,
            size: number(field(block, 124, 12), at, "size is not a number")?,
            mtime: number(field(block, 136, 12), at, "mtime is not a number")?,
            typeflag: block.get(156).copied().unwrap_or(0),
        })
    }

    fn is_ustar(&self) -> bool {
        field(self.block, 257, 6) == b"ustar\0"
    }

    fn full_name(&self, at: u64) -> Result<String, TarError> {
        let name = c_string(field(self.block, 0, 100), at, "name is not UTF-8")?;
        if self.is_ustar() {
            let prefix = c_string(field(self.block, 345, 155), at, "prefix is not UTF-8")?;
            if !prefix.is_empty() {
                return Ok(format!("{prefix}/{name}"));
            }
        }
        Ok(name)
    }

    fn link_name(&self, at: u64) -> Result<String, TarError> {
        c_string(field(self.block, 157, 100), at, "link name is not UTF-8")
    }
}

/// Checks a member name and turns it into a relative path: `.` components and empty ones
/// are dropped, `..` and absolute paths are refused.
pub fn safe_relative_path(name: &str) -> Result<PathBuf, TarError> {
    let unsafe_path = || TarError::UnsafePath {
        path: name.to_owned(),
    };
    if name.starts_with('/') || name.contains('\\') && cfg!(windows) {
        return Err(unsafe_path());
    }
    let mut out = PathBuf::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(unsafe_path()),
            p => {
                // A component must be a plain name on this platform too (no drive prefix).
                let mut comps = Path::new(p).components();
                match (comps.next(), comps.next()) {
                    (Some(Component::Normal(_)), None) => out.push(p),
                    _ => return Err(unsafe_path()),
                }
            }
        }
    }
    Ok(out)
}

/// Extracts members into a directory as they stream by.
///
/// Files, directories and symbolic links are created with the archive's permission bits.
/// Member names are checked with [`safe_relative_path`]; a member that would be written
/// through a symbolic link created by the same archive (e.g. below `pg_tblspc/<oid>`) is
/// refused too. Symbolic links below `pg_tblspc/` may be redirected with
/// [`DirExtractor::map_tablespace`], like `pg_basebackup --tablespace-mapping`.
#[derive(Debug)]
pub struct DirExtractor {
    root: PathBuf,
    mapping: HashMap<String, PathBuf>,
    renames: HashMap<PathBuf, PathBuf>,
    symlinks: Vec<PathBuf>,
    current: Option<(File, PathBuf, u32)>,
    files: u64,
    bytes: u64,
}

impl DirExtractor {
    /// Extracts below `root`, which is created if missing.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, Error> {
        let root = root.into();
        fs::create_dir_all(&root)
            .map_err(|e| Error::io("creating the target directory", &root, e))?;
        Ok(Self {
            root,
            mapping: HashMap::new(),
            renames: HashMap::new(),
            symlinks: Vec::new(),
            current: None,
            files: 0,
            bytes: 0,
        })
    }

    /// Makes a tablespace symlink pointing at `old` point at `new` instead. A relative
    /// `new` is made absolute against the current directory now: a relative link target
    /// would be resolved from `pg_tblspc`, somewhere else.
    pub fn map_tablespace(&mut self, old: impl Into<String>, new: impl Into<PathBuf>) {
        let new = new.into();
        let new = std::path::absolute(&new).unwrap_or(new);
        self.mapping.insert(old.into(), new);
    }

    /// Stores the member `name` (a path relative to the archive root) as `stored_as`
    /// instead, e.g. to keep `backup_label` out of sight until a backup is complete.
    /// Names are compared after [`safe_relative_path`]; `stored_as` must be a safe
    /// relative path too.
    pub fn rename_member(&mut self, name: &str, stored_as: &str) -> Result<(), TarError> {
        let from = safe_relative_path(name)?;
        let to = safe_relative_path(stored_as)?;
        self.renames.insert(from, to);
        Ok(())
    }

    /// The target directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Regular files written so far.
    pub fn files_written(&self) -> u64 {
        self.files
    }

    /// File bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    fn checked_target(&self, name: &str) -> Result<PathBuf, Error> {
        let rel = safe_relative_path(name)?;
        if self.symlinks.iter().any(|l| rel.starts_with(l)) {
            return Err(TarError::UnsafePath {
                path: name.to_owned(),
            }
            .into());
        }
        match self.renames.get(&rel) {
            Some(to) => Ok(self.root.join(to)),
            None => Ok(self.root.join(rel)),
        }
    }

    fn ensure_parent(path: &Path) -> Result<(), Error> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io("creating a directory", parent, e))?;
        }
        Ok(())
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("setting permissions", path, e))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<(), Error> {
    Ok(())
}

#[cfg(unix)]
fn make_symlink(target: &Path, link: &Path) -> Result<(), Error> {
    std::os::unix::fs::symlink(target, link)
        .map_err(|e| Error::io("creating a symbolic link", link, e))
}

#[cfg(not(unix))]
fn make_symlink(_target: &Path, link: &Path) -> Result<(), Error> {
    Err(Error::io(
        "creating a symbolic link",
        link,
        std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "symbolic links are only extracted on Unix",
        ),
    ))
}

impl TarVisitor for DirExtractor {
    fn begin_entry(&mut self, entry: &TarEntry) -> Result<(), Error> {
        let path = self.checked_target(&entry.path)?;
        match entry.kind {
            EntryKind::Directory => {
                if path != self.root {
                    fs::create_dir_all(&path)
                        .map_err(|e| Error::io("creating a directory", &path, e))?;
                    set_mode(&path, entry.mode | 0o700)?;
                }
            }
            EntryKind::File => {
                if path == self.root {
                    return Err(TarError::UnsafePath {
                        path: entry.path.clone(),
                    }
                    .into());
                }
                Self::ensure_parent(&path)?;
                let file =
                    File::create(&path).map_err(|e| Error::io("creating a file", &path, e))?;
                self.current = Some((file, path, entry.mode));
            }
            EntryKind::Symlink => {
                if path == self.root {
                    return Err(TarError::UnsafePath {
                        path: entry.path.clone(),
                    }
                    .into());
                }
                let target = entry.link_target.clone().unwrap_or_default();
                let rel = safe_relative_path(&entry.path)?;
                let is_tablespace = rel.parent() == Some(Path::new("pg_tblspc"));
                let target = match self.mapping.get(&target) {
                    Some(mapped) if is_tablespace => mapped.clone(),
                    _ => PathBuf::from(target),
                };
                Self::ensure_parent(&path)?;
                make_symlink(&target, &path)?;
                self.symlinks.push(rel);
            }
            EntryKind::Other(typeflag) => {
                return Err(TarError::UnsupportedEntry {
                    path: entry.path.clone(),
                    typeflag,
                }
                .into());
            }
        }
        if entry.kind == EntryKind::File {
            self.files += 1;
        }
        Ok(())
    }

    fn entry_data(&mut self, chunk: &[u8]) -> Result<(), Error> {
        if let Some((file, path, _)) = &mut self.current {
            file.write_all(chunk)
                .map_err(|e| Error::io("writing a file", path.clone(), e))?;
            self.bytes += len_u64(chunk.len());
        }
        Ok(())
    }

    fn end_entry(&mut self) -> Result<(), Error> {
        if let Some((file, path, mode)) = self.current.take() {
            drop(file);
            // The mode is applied after writing so that read-only members can be written.
            set_mode(&path, mode)?;
        }
        Ok(())
    }
}

/// Where a stream of archive bytes goes: extraction, a file, a decompressor in front of
/// either.
pub trait ArchiveSink: std::fmt::Debug + Send {
    /// Takes the next chunk of the archive.
    fn write(&mut self, chunk: &[u8]) -> Result<(), Error>;
    /// The archive is complete: flush, check it ended cleanly.
    fn finish(&mut self) -> Result<(), Error>;
}

/// Extracts a (decompressed) tar stream into a directory: [`TarReader`] + [`DirExtractor`].
#[derive(Debug)]
pub struct TarExtractor {
    reader: TarReader,
    dir: DirExtractor,
}

impl TarExtractor {
    /// Extracts into `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, Error> {
        Ok(Self {
            reader: TarReader::new(),
            dir: DirExtractor::new(root)?,
        })
    }

    /// Extracts into an already configured [`DirExtractor`].
    pub fn with_extractor(dir: DirExtractor) -> Self {
        Self {
            reader: TarReader::new(),
            dir,
        }
    }

    /// The extractor (counters, root).
    pub fn extractor(&self) -> &DirExtractor {
        &self.dir
    }
}

impl ArchiveSink for TarExtractor {
    fn write(&mut self, chunk: &[u8]) -> Result<(), Error> {
        self.reader.feed(chunk, &mut self.dir)
    }

    fn finish(&mut self) -> Result<(), Error> {
        self.reader.finish()
    }
}

/// Writes the archive bytes unchanged to a file (`pg_basebackup -Ft`).
///
/// For an uncompressed tar the stream is also parsed (nothing is kept) so that an archive
/// sent without the end-of-archive marker (PostgreSQL 14) gets one appended, as
/// `pg_basebackup` does.
#[derive(Debug)]
pub struct RawArchiveWriter {
    file: File,
    path: PathBuf,
    observer: Option<TarReader>,
}

impl RawArchiveWriter {
    /// Creates `path`; `is_plain_tar` enables the end-of-archive check.
    pub fn create(path: impl Into<PathBuf>, is_plain_tar: bool) -> Result<Self, Error> {
        let path = path.into();
        DirExtractor::ensure_parent(&path)?;
        let file =
            File::create(&path).map_err(|e| Error::io("creating an archive file", &path, e))?;
        Ok(Self {
            file,
            path,
            observer: is_plain_tar.then(TarReader::new),
        })
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl ArchiveSink for RawArchiveWriter {
    fn write(&mut self, chunk: &[u8]) -> Result<(), Error> {
        if let Some(obs) = &mut self.observer {
            obs.feed(chunk, &mut NullVisitor)?;
        }
        self.file
            .write_all(chunk)
            .map_err(|e| Error::io("writing an archive file", self.path.clone(), e))
    }

    fn finish(&mut self) -> Result<(), Error> {
        if let Some(obs) = &mut self.observer {
            obs.finish()?;
            if !obs.saw_trailer() {
                let zeros = [0u8; 2 * BLOCK];
                let missing = if obs.state == State::OneZero {
                    &zeros[..BLOCK]
                } else {
                    &zeros[..]
                };
                self.file
                    .write_all(missing)
                    .map_err(|e| Error::io("writing an archive file", self.path.clone(), e))?;
            }
        }
        self.file
            .flush()
            .map_err(|e| Error::io("writing an archive file", self.path.clone(), e))
    }
}

/// A ustar header for a regular file `name` (at most 100 bytes) of `size` bytes.
fn file_header(name: &str, size: u64, mtime: u64) -> Result<[u8; BLOCK], Error> {
    let mut h = [0u8; BLOCK];
    let bad = |reason| Error::Tar(TarError::InvalidHeader { offset: 0, reason });
    let name = name.as_bytes();
    if name.len() > 100 {
        return Err(bad("member name longer than 100 bytes"));
    }
    // 11 octal digits hold sizes below 8 GiB; WAL segments are at most 1 GiB.
    if size >= 1 << 33 {
        return Err(bad("member larger than 8 GiB"));
    }
    let mut put = |at: usize, field: &[u8]| {
        if let Some(dst) = h.get_mut(at..at + field.len()) {
            dst.copy_from_slice(field);
        }
    };
    put(0, name);
    put(100, b"0000600\0");
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    put(124, format!("{size:011o}\0").as_bytes());
    put(
        136,
        format!("{:011o}\0", mtime.min((1 << 33) - 1)).as_bytes(),
    );
    put(148, b"        ");
    put(156, b"0");
    put(257, b"ustar\0");
    put(263, b"00");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let mut h2 = h;
    if let Some(dst) = h2.get_mut(148..156) {
        dst.copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    }
    Ok(h2)
}

/// Packs the regular files directly in `dir` (sorted by name) into a new tar archive at
/// `out`, like `pg_basebackup` writes `pg_wal.tar`; returns the number of files.
pub(crate) fn pack_directory(dir: &Path, out: &Path) -> Result<usize, Error> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io("reading a directory", dir, e))? {
        let entry = entry.map_err(|e| Error::io("reading a directory", dir, e))?;
        let ft = entry
            .file_type()
            .map_err(|e| Error::io("reading a directory", entry.path(), e))?;
        if ft.is_file() {
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
    }
    names.sort();
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut file = File::create(out).map_err(|e| Error::io("creating an archive file", out, e))?;
    let write_err = |e| Error::io("writing an archive file", out, e);
    for name in &names {
        let path = dir.join(name);
        let mut src = File::open(&path).map_err(|e| Error::io("reading a file", &path, e))?;
        let size = src
            .metadata()
            .map_err(|e| Error::io("reading a file", &path, e))?
            .len();
        file.write_all(&file_header(name, size, mtime)?)
            .map_err(write_err)?;
        let copied = std::io::copy(&mut src, &mut file).map_err(write_err)?;
        if copied != size {
            return Err(Error::io(
                "a file changed while being archived",
                &path,
                std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            ));
        }
        let pad = usize::try_from(padding(size)).unwrap_or(0);
        file.write_all(&[0u8; BLOCK][..pad]).map_err(write_err)?;
    }
    file.write_all(&[0u8; 2 * BLOCK]).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    Ok(names.len())
}

#[cfg(test)]
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]
pub(crate) mod tests;
