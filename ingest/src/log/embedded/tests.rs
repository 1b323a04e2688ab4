#![allow(clippy::unwrap_used)]

use super::*;

fn client() -> ClientId {
    ClientId::new("shop").unwrap()
}

fn small_segments() -> EmbeddedLogConfig {
    EmbeddedLogConfig { segment_bytes: ByteSize::mib(1), ..Default::default() }
}

fn preallocated() -> EmbeddedLogConfig {
    EmbeddedLogConfig { preallocate: true, ..small_segments() }
}

async fn drain(consumer: &mut dyn LogConsumer) -> Vec<Delivery> {
    let mut all = Vec::new();
    loop {
        let batch = consumer.poll(1000, Duration::from_millis(50)).await.unwrap();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

#[tokio::test]
async fn appends_are_read_back_in_order_and_resume_after_commit() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), &Default::default()).unwrap();
    for i in 0..10u8 {
        assert_eq!(log.append(&client(), Bytes::from(vec![i; 10])).await.unwrap(), u64::from(i));
    }
    let mut consumer = log.consumer("lake").await.unwrap();
    let got = drain(consumer.as_mut()).await;
    assert_eq!(got.len(), 10);
    assert!(got.iter().enumerate().all(|(i, d)| d.position == i as u64 && d.payload[0] == i as u8));
    consumer.commit(6).await.unwrap();
    drop(consumer);
    drop(log);

    // A restart: the log reopens at its end and the consumer resumes after position 6.
    let log = EmbeddedLog::open(dir.path(), &Default::default()).unwrap();
    assert_eq!(log.end(), 10);
    let mut consumer = log.consumer("lake").await.unwrap();
    let got: Vec<_> = drain(consumer.as_mut()).await.iter().map(|d| d.position).collect();
    assert_eq!(got, vec![7, 8, 9]);
    // Another consumer starts from the beginning.
    let mut other = log.consumer("other").await.unwrap();
    assert_eq!(drain(other.as_mut()).await.len(), 10);
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_never_delivered() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = EmbeddedLog::open(dir.path(), &Default::default()).unwrap();
        log.append(&client(), Bytes::from_static(b"one")).await.unwrap();
        log.append(&client(), Bytes::from_static(b"two")).await.unwrap();
    }
    // Simulate a crash in the middle of writing a third frame, then garbage.
    let seg = segment_path(&dir.path().join("segments"), 0);
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[50, 0, 0, 0, 1, 2, 3, 4, b'x']).unwrap();
    drop(f);

    let log = EmbeddedLog::open(dir.path(), &Default::default()).unwrap();
    assert_eq!(log.end(), 2);
    assert_eq!(fs::metadata(&seg).unwrap().len(), 2 * (FRAME_HEADER as u64 + 3));
    assert_eq!(log.append(&client(), Bytes::from_static(b"three")).await.unwrap(), 2);
    let mut consumer = log.consumer("c").await.unwrap();
    let payloads: Vec<_> = drain(consumer.as_mut()).await.into_iter().map(|d| d.payload).collect();
    assert_eq!(payloads, vec![&b"one"[..], &b"two"[..], &b"three"[..]]);
}

#[tokio::test]
async fn a_corrupt_frame_ends_recovery_at_the_last_good_record() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = EmbeddedLog::open(dir.path(), &Default::default()).unwrap();
        for p in [&b"aaaa"[..], b"bbbb", b"cccc"] {
            log.append(&client(), Bytes::copy_from_slice(p)).await.unwrap();
        }
    }
    let seg = segment_path(&dir.path().join("segments"), 0);
    let mut bytes = fs::read(&seg).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff; // flip a bit of the third record's payload
    fs::write(&seg, bytes).unwrap();
    let log = EmbeddedLog::open(dir.path(), &Default::default()).unwrap();
    assert_eq!(log.end(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_group_commits_and_all_land_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(EmbeddedLog::open(dir.path(), &small_segments()).unwrap());
    let mut tasks = Vec::new();
    for t in 0..16u32 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut positions = Vec::new();
            for i in 0..200u32 {
                let payload = format!("{t}:{i}:{}", "x".repeat(1000));
                positions.push(log.append(&client(), Bytes::from(payload)).await.unwrap());
            }
            positions
        }));
    }
    let mut positions = Vec::new();
    for t in tasks {
        positions.extend(t.await.unwrap());
    }
    positions.sort_unstable();
    assert_eq!(positions, (0..3200).collect::<Vec<_>>());
    // 3.2 MB over 1 MiB segments: several segments, read back across their boundaries.
    assert!(list_segments(&dir.path().join("segments")).unwrap().len() >= 3);
    let mut consumer = log.consumer("c").await.unwrap();
    let got = drain(consumer.as_mut()).await;
    assert_eq!(got.len(), 3200);
    let mut seen: Vec<_> = got.iter().map(|d| String::from_utf8_lossy(&d.payload[..10]).into_owned()).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 3200);
}

#[tokio::test]
async fn consumed_segments_are_deleted_after_retention_and_unconsumed_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedLogConfig { retention: Duration::ZERO, ..small_segments() };
    let log = EmbeddedLog::open(dir.path(), &config).unwrap();
    let mut consumer = log.consumer("c").await.unwrap();
    let big = Bytes::from(vec![7u8; 600 * 1024]);
    for _ in 0..4 {
        log.append(&client(), big.clone()).await.unwrap();
    }
    // Nothing committed yet: a roll deletes nothing.
    let before = list_segments(&dir.path().join("segments")).unwrap();
    assert!(before.len() >= 2);
    assert_eq!(before[0], 0);
    consumer.commit(2).await.unwrap();
    for _ in 0..2 {
        log.append(&client(), big.clone()).await.unwrap();
    }
    let after = list_segments(&dir.path().join("segments")).unwrap();
    assert!(after[0] > 0, "consumed segments are gone: {after:?}");
    assert!(after[0] <= 3, "segments holding uncommitted records stay: {after:?}");
    // Reading resumes fine after the deletion.
    let mut consumer = log.consumer("c").await.unwrap();
    assert_eq!(drain(consumer.as_mut()).await.first().map(|d| d.position), Some(3));
}

#[tokio::test]
async fn a_second_writer_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _log = EmbeddedLog::open(dir.path(), &Default::default()).unwrap();
    let err = EmbeddedLog::open(dir.path(), &Default::default()).err().unwrap();
    assert!(err.to_string().contains("in use"), "{err}");
}

#[tokio::test]
async fn bad_consumer_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), &Default::default()).unwrap();
    assert!(matches!(log.consumer("../etc").await, Err(LogError::BadConsumerName(_))));
}

/// Appends `n` records of `size` bytes, each a distinct payload starting with its number.
async fn append_numbered(log: &EmbeddedLog, from: usize, n: usize, size: usize) {
    for i in from..from + n {
        let mut payload = format!("{i:08}").into_bytes();
        payload.resize(size, b'x');
        log.append(&client(), Bytes::from(payload)).await.unwrap();
    }
}

fn numbers(deliveries: &[Delivery]) -> Vec<usize> {
    deliveries.iter().map(|d| std::str::from_utf8(&d.payload[..8]).unwrap().parse().unwrap()).collect()
}

#[tokio::test]
async fn segments_after_the_first_are_preallocated_and_read_while_they_fill() {
    let dir = tempfile::tempdir().unwrap();
    let segments = dir.path().join("segments");
    let log = EmbeddedLog::open_with(dir.path(), &preallocated(), true).unwrap();
    let mut consumer = log.consumer("c").await.unwrap();
    let mut read = Vec::new();
    // 10 KiB records over 1 MiB segments, read back in small steps as they are written: the
    // reader's buffer holds the zeros of the active segment ahead of the records.
    for step in 0..30 {
        append_numbered(&log, step * 10, 10, 10 * 1024).await;
        read.extend(numbers(&drain(consumer.as_mut()).await));
    }
    assert_eq!(read, (0..300).collect::<Vec<_>>());
    let bases = list_segments(&segments).unwrap();
    assert!(bases.len() >= 3, "{bases:?}");
    // The active segment was prepared: full size, though its records fill only part of it.
    let active = segment_path(&segments, *bases.last().unwrap());
    let (records, used) = scan_segment(&active).unwrap();
    assert!(records > 0);
    assert!(used < ByteSize::mib(1).0);
    assert_eq!(fs::metadata(&active).unwrap().len(), ByteSize::mib(1).0);
    drop(consumer);
    drop(log);

    // A restart finds the end of the records inside the preallocated space and appends there.
    let log = EmbeddedLog::open(dir.path(), &preallocated()).unwrap();
    assert_eq!(log.end(), 300);
    assert_eq!(fs::metadata(&active).unwrap().len(), ByteSize::mib(1).0, "zeros are not a torn tail");
    append_numbered(&log, 300, 5, 10 * 1024).await;
    let mut consumer = log.consumer("other").await.unwrap();
    assert_eq!(numbers(&drain(consumer.as_mut()).await), (0..305).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_torn_write_in_a_preallocated_segment_is_cut_and_an_interrupted_preparation_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let segments = dir.path().join("segments");
    {
        let log = EmbeddedLog::open_with(dir.path(), &preallocated(), true).unwrap();
        append_numbered(&log, 0, 150, 10 * 1024).await;
    }
    let bases = list_segments(&segments).unwrap();
    let active = segment_path(&segments, *bases.last().unwrap());
    let (records, used) = scan_segment(&active).unwrap();
    assert_eq!(fs::metadata(&active).unwrap().len(), ByteSize::mib(1).0);
    // A crash: part of a group reached the disk past the last whole record, and a preparation
    // was cut short.
    let file = OpenOptions::new().write(true).open(&active).unwrap();
    file.write_all_at(&[0x10, 0, 0, 0, 9, 9, 9, 9, b'p', b'a', b'r'], used).unwrap();
    file.write_all_at(b"stale", used + 4000).unwrap();
    drop(file);
    fs::write(segments.join(PREPARED), b"half").unwrap();

    let log = EmbeddedLog::open(dir.path(), &preallocated()).unwrap();
    assert_eq!(log.end(), 150);
    assert_eq!(records, 150 - bases.last().unwrap());
    assert_eq!(fs::metadata(&active).unwrap().len(), used, "the torn tail is cut");
    // The half preparation is gone; the one the reopened log may have started holds only zeros.
    let prepared = fs::read(segments.join(PREPARED)).unwrap_or_default();
    assert!(prepared.iter().all(|&b| b == 0), "the interrupted preparation was dropped");
    append_numbered(&log, 150, 3, 10 * 1024).await;
    drop(log);
    let log = EmbeddedLog::open(dir.path(), &preallocated()).unwrap();
    assert_eq!(log.end(), 153);
    let mut consumer = log.consumer("c").await.unwrap();
    assert_eq!(numbers(&drain(consumer.as_mut()).await), (0..153).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_empty_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), &Default::default()).unwrap();
    assert!(matches!(log.append(&client(), Bytes::new()).await, Err(LogError::Empty)));
    assert_eq!(log.append(&client(), Bytes::from_static(b"a")).await.unwrap(), 0);
}

#[tokio::test]
async fn without_preallocation_segments_grow_by_appends() {
    let dir = tempfile::tempdir().unwrap();
    let segments = dir.path().join("segments");
    // The default.
    let config = small_segments();
    assert!(!config.preallocate);
    let log = EmbeddedLog::open_with(dir.path(), &config, true).unwrap();
    append_numbered(&log, 0, 150, 10 * 1024).await;
    let bases = list_segments(&segments).unwrap();
    assert_eq!(bases.len(), 2);
    let active = segment_path(&segments, bases[1]);
    assert_eq!(fs::metadata(&active).unwrap().len(), scan_segment(&active).unwrap().1);
    assert!(!segments.join(PREPARED).exists());
    let mut consumer = log.consumer("c").await.unwrap();
    assert_eq!(numbers(&drain(consumer.as_mut()).await), (0..150).collect::<Vec<_>>());
}

/// Waits until `size()` reaches `target`, for at most 30 s (the zero-filler is a thread of its
/// own, slow on a loaded machine); the caller asserts the size it finds.
async fn grown_to(size: &impl Fn() -> u64, target: u64) {
    for _ in 0..3000 {
        if size() >= target {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_next_segment_is_zero_filled_at_the_pace_of_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let prepared = dir.path().join("segments").join(PREPARED);
    let config = EmbeddedLogConfig { preallocate: true, ..Default::default() };
    let log = EmbeddedLog::open(dir.path(), &config).unwrap();
    let size = || fs::metadata(&prepared).map_or(0, |m| m.len());
    // Nothing appended yet: the zeros stop at PREPARE_AHEAD, not at the segment's 64 MiB.
    let limit =
        |appended: u64| (PREPARE_AHEAD + appended * 5 / 4).div_ceil(PREPARE_CHUNK as u64) * PREPARE_CHUNK as u64;
    grown_to(&size, limit(0)).await;
    assert_eq!(size(), limit(0));
    // 4 MiB of records: the zeros follow, to 5/4 of them plus PREPARE_AHEAD, and no further.
    append_numbered(&log, 0, 4, 1024 * 1024).await;
    let appended = 4 * (1024 * 1024 + FRAME_HEADER as u64);
    grown_to(&size, limit(appended)).await;
    assert_eq!(size(), limit(appended));
    assert!(limit(appended) < ByteSize::mib(64).0);
}

/// A log in `dir` holding ten records at positions 0 to 9.
async fn ten_records(dir: &Path) -> EmbeddedLog {
    let log = EmbeddedLog::open(dir, &Default::default()).unwrap();
    for i in 0..10u8 {
        log.append(&client(), Bytes::from(vec![i; 10])).await.unwrap();
    }
    log
}

fn pos_path(dir: &Path, name: &str) -> PathBuf {
    PositionFile::of(dir, name).path
}

#[tokio::test]
async fn a_commit_overwrites_one_fixed_width_line_in_place() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let log = ten_records(dir.path()).await;
    let mut consumer = log.consumer("lake").await.unwrap();
    let path = pos_path(dir.path(), "lake");
    consumer.commit(2).await.unwrap();
    let first = fs::metadata(&path).unwrap();
    assert_eq!(first.len(), POSITION_LINE as u64);
    for position in [3, 5, 8] {
        consumer.commit(position).await.unwrap();
        let now = fs::metadata(&path).unwrap();
        assert_eq!((now.ino(), now.len()), (first.ino(), first.len()), "the same file, the same size");
    }
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        format!("{:020} {:08x}\n", 8, crc32fast::hash(b"00000000000000000008"))
    );
    drop(consumer);
    let mut consumer = log.consumer("lake").await.unwrap();
    let got: Vec<_> = drain(consumer.as_mut()).await.iter().map(|d| d.position).collect();
    assert_eq!(got, vec![9]);
}

#[tokio::test]
async fn a_position_file_of_the_earlier_form_is_read_then_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let log = ten_records(dir.path()).await;
    let path = pos_path(dir.path(), "lake");
    fs::write(&path, "6\n").unwrap();
    let mut consumer = log.consumer("lake").await.unwrap();
    assert_eq!(drain(consumer.as_mut()).await.first().map(|d| d.position), Some(7));
    consumer.commit(8).await.unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), POSITION_LINE as u64);
    consumer.commit(9).await.unwrap();
    drop(consumer);
    let mut consumer = log.consumer("lake").await.unwrap();
    assert!(drain(consumer.as_mut()).await.is_empty(), "everything was committed");
}

#[tokio::test]
async fn a_position_that_does_not_match_its_checksum_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), &Default::default()).unwrap();
    let path = pos_path(dir.path(), "lake");
    // Position 8 with the checksum of position 3: a torn or corrupt write.
    fs::write(&path, format!("{:020} {:08x}\n", 8, crc32fast::hash(b"00000000000000000003"))).unwrap();
    let err = log.consumer("lake").await.err().unwrap().to_string();
    assert!(err.contains("lake.pos") && err.contains("checksum"), "{err}");
    fs::write(&path, "eight\n").unwrap();
    let err = log.consumer("lake").await.err().unwrap().to_string();
    assert!(err.contains("lake.pos") && err.contains("bad position `eight`"), "{err}");
}
