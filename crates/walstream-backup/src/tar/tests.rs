use super::*;

/// Builds a ustar header block.
pub(crate) fn header(name: &str, typeflag: u8, size: u64, link: &str) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000640");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    let size = format!("{size:011o}");
    h[124..135].copy_from_slice(size.as_bytes());
    h[136..147].copy_from_slice(b"14000000000");
    h[156] = typeflag;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    seal(&mut h);
    h
}

fn seal(h: &mut [u8; BLOCK]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
}

fn push_member(out: &mut Vec<u8>, h: [u8; BLOCK], data: &[u8]) {
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
}

/// An archive of (name, typeflag, data) members with the end-of-archive marker.
pub(crate) fn archive(members: &[(&str, u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, t, data) in members {
        let (link, data): (&str, &[u8]) = if *t == b'2' {
            (std::str::from_utf8(data).unwrap(), &[])
        } else {
            ("", data)
        };
        push_member(&mut out, header(name, *t, data.len() as u64, link), data);
    }
    out.extend_from_slice(&[0u8; 2 * BLOCK]);
    out
}

#[derive(Default, Debug)]
struct Collect {
    entries: Vec<(TarEntry, Vec<u8>)>,
    open: bool,
}

impl TarVisitor for Collect {
    fn begin_entry(&mut self, entry: &TarEntry) -> Result<(), Error> {
        assert!(!self.open);
        self.open = true;
        self.entries.push((entry.clone(), Vec::new()));
        Ok(())
    }
    fn entry_data(&mut self, chunk: &[u8]) -> Result<(), Error> {
        assert!(self.open);
        self.entries.last_mut().unwrap().1.extend_from_slice(chunk);
        Ok(())
    }
    fn end_entry(&mut self) -> Result<(), Error> {
        assert!(self.open);
        self.open = false;
        Ok(())
    }
}

fn parse_chunked(data: &[u8], chunk: usize) -> Result<(Collect, TarReader), Error> {
    let mut r = TarReader::new();
    let mut c = Collect::default();
    for piece in data.chunks(chunk.max(1)) {
        r.feed(piece, &mut c)?;
    }
    r.finish()?;
    Ok((c, r))
}

#[test]
fn members_and_data_at_every_split() {
    let big: Vec<u8> = (0..1500u32).map(|i| (i % 251) as u8).collect();
    let tar = archive(&[
        ("dir/", b'5', b""),
        ("dir/a", b'0', b"abc"),
        ("big", b'0', &big),
        ("empty", b'0', b""),
    ]);
    for chunk in [1, 2, 3, 511, 512, 513, 1024, 4096, tar.len()] {
        let (c, r) = parse_chunked(&tar, chunk).unwrap();
        assert!(r.saw_trailer());
        assert_eq!(r.offset(), tar.len() as u64);
        let names: Vec<_> = c.entries.iter().map(|(e, _)| e.path.as_str()).collect();
        assert_eq!(names, ["dir/", "dir/a", "big", "empty"]);
        assert_eq!(c.entries[0].0.kind, EntryKind::Directory);
        assert_eq!(c.entries[1].1, b"abc");
        assert_eq!(c.entries[2].1, big);
        assert_eq!(c.entries[1].0.mode, 0o640);
        assert_eq!(c.entries[1].0.mtime, 0o14000000000);
    }
}

#[test]
fn archive_without_trailer_is_accepted_but_cut_member_is_not() {
    let mut tar = archive(&[("a", b'0', b"12345")]);
    tar.truncate(tar.len() - 2 * BLOCK);
    let (c, r) = parse_chunked(&tar, 100).unwrap();
    assert_eq!(c.entries.len(), 1);
    assert!(!r.saw_trailer());
    let cut = &tar[..BLOCK + 3];
    let err = parse_chunked(cut, 7).unwrap_err();
    assert!(
        matches!(err, Error::Tar(TarError::Truncated { .. })),
        "{err:?}"
    );
    let err = parse_chunked(&tar[..100], 7).unwrap_err();
    assert!(
        matches!(err, Error::Tar(TarError::Truncated { offset: 100 })),
        "{err:?}"
    );
}

#[test]
fn bad_checksum_and_garbage_numbers_are_typed_errors() {
    let mut tar = archive(&[("a", b'0', b"x")]);
    tar[0] = b'b';
    let err = parse_chunked(&tar, 512).unwrap_err();
    assert!(
        matches!(err, Error::Tar(TarError::BadChecksum { offset: 0 })),
        "{err:?}"
    );
    let mut h = header("a", b'0', 0, "");
    h[124..135].copy_from_slice(b"0000000009x");
    seal(&mut h);
    let err = parse_chunked(&h, 512).unwrap_err();
    assert!(
        matches!(err, Error::Tar(TarError::InvalidHeader { .. })),
        "{err:?}"
    );
}

#[test]
fn base256_size_is_understood() {
    let mut h = header("huge", b'0', 0, "");
    h[124..136].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x00]);
    seal(&mut h);
    let mut r = TarReader::new();
    let mut c = Collect::default();
    r.feed(&h, &mut c).unwrap();
    assert_eq!(c.entries[0].0.size, 512);
    assert!(r.finish().is_err());
}

#[test]
fn gnu_long_names_and_pax_overrides() {
    let long = format!("{}/file", "d".repeat(150));
    let target = format!("/{}", "t".repeat(120));
    let mut tar = Vec::new();
    push_member(
        &mut tar,
        header("././@LongLink", b'L', long.len() as u64 + 1, ""),
        format!("{long}\0").as_bytes(),
    );
    push_member(&mut tar, header("short", b'0', 2, ""), b"hi");
    push_member(
        &mut tar,
        header("././@LongLink", b'K', target.len() as u64, ""),
        target.as_bytes(),
    );
    push_member(&mut tar, header("lnk", b'2', 0, "x"), b"");
    let rec = |k: &str, v: &str| {
        let body = format!(" {k}={v}\n");
        let mut n = body.len() + 1;
        while format!("{n}{body}").len() != n {
            n += 1;
        }
        format!("{n}{body}")
    };
    let pax = format!("{}{}", rec("path", "pax/näme"), rec("size", "3"));
    push_member(
        &mut tar,
        header("PaxHeader", b'x', pax.len() as u64, ""),
        pax.as_bytes(),
    );
    push_member(&mut tar, header("ignored", b'0', 99, ""), b"xyz");
    let global = rec("comment", "hello");
    push_member(
        &mut tar,
        header("g", b'g', global.len() as u64, ""),
        global.as_bytes(),
    );
    // ustar prefix field.
    let mut h = header("name", b'0', 1, "");
    h[345..351].copy_from_slice(b"prefix");
    seal(&mut h);
    push_member(&mut tar, h, b"p");
    tar.extend_from_slice(&[0u8; 1024]);
    for chunk in [1, 13, 512, 4096] {
        let (c, _) = parse_chunked(&tar, chunk).unwrap();
        let e: Vec<_> = c
            .entries
            .iter()
            .map(|(e, d)| (e.path.clone(), e.link_target.clone(), d.clone()))
            .collect();
        assert_eq!(
            e,
            vec![
                (long.clone(), None, b"hi".to_vec()),
                ("lnk".into(), Some(target.clone()), vec![]),
                ("pax/näme".into(), None, b"xyz".to_vec()),
                ("prefix/name".into(), None, b"p".to_vec()),
            ]
        );
    }
}

#[test]
fn metadata_members_are_bounded() {
    let mut tar = Vec::new();
    push_member(
        &mut tar,
        header("././@LongLink", b'L', 5000, ""),
        &[b'a'; 5000],
    );
    let mut r = TarReader::new().with_max_metadata(4096);
    let err = r.feed(&tar, &mut NullVisitor).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Tar(TarError::MetadataTooLarge {
                len: 5000,
                max: 4096
            })
        ),
        "{err:?}"
    );
}

#[test]
fn malformed_pax_is_an_error() {
    for body in ["garbage", "99 path=x\n", "6 path\n", "abc path=x\n"] {
        let mut tar = Vec::new();
        push_member(
            &mut tar,
            header("p", b'x', body.len() as u64, ""),
            body.as_bytes(),
        );
        let err = parse_chunked(&tar, 512).unwrap_err();
        assert!(
            matches!(err, Error::Tar(TarError::InvalidHeader { .. })),
            "{body}: {err:?}"
        );
    }
}

#[test]
fn safe_paths() {
    assert_eq!(
        safe_relative_path("./base/1/123").unwrap(),
        PathBuf::from("base/1/123")
    );
    assert_eq!(
        safe_relative_path("pg_wal/").unwrap(),
        PathBuf::from("pg_wal")
    );
    assert_eq!(safe_relative_path("./").unwrap(), PathBuf::new());
    for bad in ["/etc/passwd", "../x", "a/../../x", "a/.."] {
        assert!(
            matches!(safe_relative_path(bad), Err(TarError::UnsafePath { .. })),
            "{bad}"
        );
    }
}

#[test]
fn extraction_writes_files_dirs_modes_and_links() {
    let dir = tempfile::tempdir().unwrap();
    let ts = tempfile::tempdir().unwrap();
    let mapped = tempfile::tempdir().unwrap();
    let mut h = header("global/pg_control", b'0', 4, "");
    h[100..107].copy_from_slice(b"0000600");
    seal(&mut h);
    let mut tar = Vec::new();
    push_member(&mut tar, header("./", b'5', 0, ""), b"");
    push_member(&mut tar, header("global/", b'5', 0, ""), b"");
    push_member(&mut tar, h, b"ctrl");
    push_member(
        &mut tar,
        header("pg_tblspc/16384", b'2', 0, ts.path().to_str().unwrap()),
        b"",
    );
    push_member(
        &mut tar,
        header("pg_tblspc/16385", b'2', 0, "/orig/loc"),
        b"",
    );
    push_member(&mut tar, header("deep/er/file", b'0', 1, ""), b"z");
    tar.extend_from_slice(&[0u8; 1024]);
    let mut ex = DirExtractor::new(dir.path()).unwrap();
    ex.map_tablespace("/orig/loc", mapped.path());
    let mut sink = TarExtractor::with_extractor(ex);
    for c in tar.chunks(100) {
        sink.write(c).unwrap();
    }
    sink.finish().unwrap();
    assert_eq!(sink.extractor().files_written(), 2);
    assert_eq!(sink.extractor().bytes_written(), 5);
    assert_eq!(
        fs::read(dir.path().join("global/pg_control")).unwrap(),
        b"ctrl"
    );
    assert_eq!(fs::read(dir.path().join("deep/er/file")).unwrap(), b"z");
    assert_eq!(
        fs::read_link(dir.path().join("pg_tblspc/16384")).unwrap(),
        ts.path()
    );
    assert_eq!(
        fs::read_link(dir.path().join("pg_tblspc/16385")).unwrap(),
        mapped.path()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let m = fs::metadata(dir.path().join("global/pg_control"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(m & 0o777, 0o600);
    }
}

#[test]
fn traversal_and_writes_through_links_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    let cases: Vec<Vec<u8>> = vec![
        archive(&[("../escape", b'0', b"x")]),
        archive(&[("/abs", b'0', b"x")]),
        archive(&[("a/../../escape", b'0', b"x")]),
        archive(&[
            ("link", b'2', outside.path().to_str().unwrap().as_bytes()),
            ("link/pwned", b'0', b"x"),
        ]),
        archive(&[
            ("link", b'2', outside.path().to_str().unwrap().as_bytes()),
            ("link", b'0', b"x"),
        ]),
    ];
    for tar in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = TarExtractor::new(dir.path()).unwrap();
        let err = sink.write(&tar).unwrap_err();
        assert!(
            matches!(err, Error::Tar(TarError::UnsafePath { .. })),
            "{err:?}"
        );
        assert!(fs::read_dir(outside.path()).unwrap().next().is_none());
    }
    let dir = tempfile::tempdir().unwrap();
    let err = TarExtractor::new(dir.path())
        .unwrap()
        .write(&archive(&[("hl", b'1', b"")]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Tar(TarError::UnsupportedEntry { typeflag: b'1', .. })
        ),
        "{err:?}"
    );
}

#[test]
fn raw_writer_keeps_bytes_and_adds_a_missing_trailer() {
    let dir = tempfile::tempdir().unwrap();
    let full = archive(&[("a", b'0', b"data")]);
    let bare = &full[..full.len() - 1024];
    for (input, name) in [(&full[..], "full.tar"), (bare, "bare.tar")] {
        let path = dir.path().join(name);
        let mut w = RawArchiveWriter::create(&path, true).unwrap();
        for c in input.chunks(300) {
            w.write(c).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(fs::read(&path).unwrap(), full);
    }
    let path = dir.path().join("x.tar.gz");
    let mut w = RawArchiveWriter::create(&path, false).unwrap();
    w.write(b"opaque").unwrap();
    w.finish().unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"opaque");
}

#[test]
fn gnu_tar_output_extracts_identically() {
    // Cross-check against the system's tar when it exists (GNU or bsdtar).
    let src = tempfile::tempdir().unwrap();
    let long_dir = src.path().join("d".repeat(120));
    fs::create_dir_all(&long_dir).unwrap();
    fs::write(long_dir.join("f".repeat(110)), b"long name contents").unwrap();
    fs::write(src.path().join("small"), vec![3u8; 10_000]).unwrap();
    let out = tempfile::tempdir().unwrap();
    let tar_path = out.path().join("t.tar");
    for format in ["gnu", "pax", "ustar"] {
        let status = std::process::Command::new("tar")
            .arg(format!("--format={format}"))
            .arg("-cf")
            .arg(&tar_path)
            .arg("-C")
            .arg(src.path())
            .arg(".")
            .status();
        let Ok(status) = status else {
            eprintln!("SKIPPED: no tar binary");
            return;
        };
        if !status.success() {
            // ustar cannot hold the long name: that is expected.
            assert_eq!(format, "ustar");
            continue;
        }
        let data = fs::read(&tar_path).unwrap();
        let dest = tempfile::tempdir().unwrap();
        let mut sink = TarExtractor::new(dest.path()).unwrap();
        for c in data.chunks(777) {
            sink.write(c).unwrap();
        }
        sink.finish().unwrap();
        let rel = PathBuf::from("d".repeat(120)).join("f".repeat(110));
        assert_eq!(
            fs::read(dest.path().join(&rel)).unwrap(),
            b"long name contents",
            "{format}"
        );
        assert_eq!(
            fs::read(dest.path().join("small")).unwrap(),
            vec![3u8; 10_000]
        );
    }
}

#[test]
fn packed_directory_reads_back_with_ours_and_gnu_tar() {
    let src = tempfile::tempdir().unwrap();
    fs::write(
        src.path().join("000000010000000000000002"),
        vec![7u8; 4096 + 13],
    )
    .unwrap();
    fs::write(src.path().join("000000010000000000000001"), b"first").unwrap();
    fs::write(src.path().join("empty"), b"").unwrap();
    fs::create_dir(src.path().join("archive_status")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let tar_path = out.path().join("pg_wal.tar");
    assert_eq!(pack_directory(src.path(), &tar_path).unwrap(), 3);
    let data = fs::read(&tar_path).unwrap();
    assert_eq!(data.len() % BLOCK, 0);

    let dest = tempfile::tempdir().unwrap();
    let mut sink = TarExtractor::new(dest.path()).unwrap();
    for c in data.chunks(100) {
        sink.write(c).unwrap();
    }
    sink.finish().unwrap();
    for name in [
        "000000010000000000000001",
        "000000010000000000000002",
        "empty",
    ] {
        assert_eq!(
            fs::read(dest.path().join(name)).unwrap(),
            fs::read(src.path().join(name)).unwrap(),
            "{name}"
        );
    }
    // The system's tar agrees, when there is one.
    if let Ok(o) = std::process::Command::new("tar")
        .arg("-tvf")
        .arg(&tar_path)
        .output()
    {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let listing = String::from_utf8_lossy(&o.stdout);
        assert_eq!(listing.lines().count(), 3, "{listing}");
        assert!(listing.contains("4109"), "{listing}");
    }
    // Names longer than ustar holds are refused.
    fs::write(src.path().join("n".repeat(101)), b"x").unwrap();
    assert!(pack_directory(src.path(), &out.path().join("x.tar")).is_err());
}
