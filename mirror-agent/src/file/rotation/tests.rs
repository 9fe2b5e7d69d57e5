use std::io::Read as _;
use std::sync::{Arc, Mutex};

use super::*;
use crate::clock::civil_from_days;
use crate::file::gor::{self, PayloadKind, PayloadMeta, PayloadReader};

/// A clock the test moves.
#[derive(Clone)]
struct TestClock(Arc<Mutex<SystemTime>>);

impl TestClock {
    fn at(unix_secs: u64) -> Self {
        Self(Arc::new(Mutex::new(
            UNIX_EPOCH + Duration::from_secs(unix_secs),
        )))
    }

    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

/// A directory of its own for each test, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mirror-rot-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// The file names in it (and in its subdirectories), sorted.
    fn files(&self) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, base, out);
                } else {
                    out.push(path.strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.0, &self.0, &mut out);
        out.sort();
        out
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Payload `i`: a request of about 100 bytes.
fn payload(i: u64) -> Vec<u8> {
    let meta = PayloadMeta {
        kind: PayloadKind::Request,
        id: format!("{i:024x}"),
        timestamp_ns: i as i64,
        latency_ns: -1,
    };
    let data = format!("GET /item/{i} HTTP/1.1\r\nHost: example\r\nX-Pad: {i:040}\r\n\r\n");
    let mut out = Vec::new();
    gor::encode(&meta, data.as_bytes(), &mut out).unwrap();
    out
}

/// The timestamps of a file's payloads, in order; every payload must read.
fn read_ids(path: &Path) -> Vec<i64> {
    PayloadReader::open(path, 1 << 20)
        .unwrap()
        .map(|item| item.unwrap().unwrap().meta.timestamp_ns)
        .collect()
}

/// A writer of files named by `pattern`, rotated at `max_bytes` bytes or
/// `max_age` seconds, on the test's clock.
fn writer(
    pattern: PathBuf,
    max_bytes: Option<u64>,
    max_age: Option<u64>,
    clock: &TestClock,
) -> RotatingWriter {
    let plan = OutputPlan {
        pattern,
        max_bytes,
        max_age: max_age.map(Duration::from_secs),
    };
    RotatingWriter::with_clock(plan, Box::new(clock.clone())).unwrap()
}

#[test]
fn size_rotation_keeps_every_payload_whole_and_in_order_across_files() {
    let dir = Dir::new("size");
    let size = payload(0).len() as u64;
    let max = 10 * size + size / 2;
    let clock = TestClock::at(1_700_000_000);
    let mut writer = writer(dir.0.join("req.gor"), Some(max), None, &clock);
    for i in 0..95 {
        writer.write_encoded(&payload(i)).unwrap();
    }
    assert_eq!(writer.finish().unwrap(), 10);
    let mut names = dir.files();
    // req.gor, req_1.gor .. req_9.gor, in the order they were written.
    names.sort_by_key(|n| {
        n.trim_start_matches("req")
            .trim_start_matches('_')
            .trim_end_matches(".gor")
            .parse::<u32>()
            .unwrap_or(0)
    });
    assert_eq!(names.len(), 10, "{names:?}");
    assert_eq!(names[0], "req.gor");
    assert_eq!(names[9], "req_9.gor");
    let mut all = Vec::new();
    for name in &names {
        let path = dir.0.join(name);
        let ids = read_ids(&path);
        assert!(std::fs::metadata(&path).unwrap().len() <= max, "{name}");
        assert!(ids.len() == 10 || name == "req_9.gor", "{name}: {ids:?}");
        all.extend(ids);
    }
    assert_eq!(all, (0..95).collect::<Vec<i64>>());
}

#[test]
fn a_payload_larger_than_the_size_gets_a_file_of_its_own() {
    let dir = Dir::new("large");
    let mut writer = writer(dir.0.join("req.gor"), Some(10), None, &TestClock::at(0));
    for i in 0..3 {
        writer.write_encoded(&payload(i)).unwrap();
    }
    assert_eq!(writer.finish().unwrap(), 3);
    assert_eq!(dir.files(), ["req.gor", "req_1.gor", "req_2.gor"]);
    assert_eq!(read_ids(&dir.0.join("req_2.gor")), [2]);
}

#[test]
fn time_patterns_expand_in_utc_with_a_fixed_clock() {
    let pattern = NamePattern::parse(Path::new(
        "/rec/%Y/%m/%d/req-%Y-%m-%dT%H:%M:%S.%NS-100%%.gor",
    ))
    .unwrap();
    assert!(pattern.has_time());
    // 2024-02-29 23:59:58.000000042 UTC, a leap day.
    let t = UNIX_EPOCH + Duration::new(1_709_251_198, 42);
    assert_eq!(
        pattern.expand(t),
        Path::new("/rec/2024/02/29/req-2024-02-29T23:59:58.000000042-100%.gor")
    );
    assert_eq!(
        pattern.expand(t + Duration::from_secs(2)),
        Path::new("/rec/2024/03/01/req-2024-03-01T00:00:00.000000042-100%.gor")
    );
    assert_eq!(
        NamePattern::parse(Path::new("%Y%m%d%H.gor"))
            .unwrap()
            .expand(UNIX_EPOCH),
        Path::new("1970010100.gor")
    );
    let plain = NamePattern::parse(Path::new("requests.gor")).unwrap();
    assert!(!plain.has_time());
    assert_eq!(plain.expand(t), Path::new("requests.gor"));
    for (days, date) in [
        (0, (1970, 1, 1)),
        (-1, (1969, 12, 31)),
        (11_016, (2000, 2, 29)),
        (20_088, (2024, 12, 31)),
        (47_541, (2100, 3, 1)),
    ] {
        assert_eq!(civil_from_days(days), date, "day {days}");
    }
}

#[test]
fn unknown_patterns_and_names_that_are_no_file_are_refused() {
    let err = NamePattern::parse(Path::new("req-%y.gor")).unwrap_err();
    assert!(err.contains("`%y`") && err.contains("%Y year"), "{err}");
    assert!(NamePattern::parse(Path::new("req-%")).is_err());
    assert!(NamePattern::parse(Path::new("dir/")).is_err());
    assert!(NamePattern::parse(Path::new("")).is_err());
}

#[test]
fn an_hourly_pattern_starts_a_file_each_hour_and_nanoseconds_alone_do_not() {
    let dir = Dir::new("hourly");
    // 2023-11-14 22:13:20 UTC
    let clock = TestClock::at(1_700_000_000);
    let mut writer = writer(dir.0.join("%Y%m%d/req-%H-%NS.gor"), None, None, &clock);
    writer.write_encoded(&payload(0)).unwrap();
    clock.advance(Duration::from_secs(20 * 60));
    writer.write_encoded(&payload(1)).unwrap();
    writer.flush().unwrap();
    // 22:59:59.5 → still the first file; 23:00 → the second.
    clock.advance(Duration::from_millis(26 * 60 * 1000 + 39_500));
    writer.write_encoded(&payload(2)).unwrap();
    clock.advance(Duration::from_millis(500));
    writer.write_encoded(&payload(3)).unwrap();
    // The hour passes with nothing to write: the file is completed by the
    // flush, and no empty file is opened.
    clock.advance(Duration::from_secs(3600));
    writer.flush().unwrap();
    assert_eq!(writer.finish().unwrap(), 2);
    let names = dir.files();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names[0].starts_with("20231114/req-22-000000000"),
        "{names:?}"
    );
    assert!(
        names[1].starts_with("20231114/req-23-000000000"),
        "{names:?}"
    );
    assert_eq!(read_ids(&dir.0.join(&names[0])), [0, 1, 2]);
    assert_eq!(read_ids(&dir.0.join(&names[1])), [3]);
}

#[test]
fn age_rotation_starts_a_file_when_the_current_one_is_old_enough() {
    let dir = Dir::new("age");
    let clock = TestClock::at(1_000);
    let mut writer = writer(dir.0.join("req.gor"), None, Some(600), &clock);
    writer.write_encoded(&payload(0)).unwrap();
    clock.advance(Duration::from_secs(599));
    writer.write_encoded(&payload(1)).unwrap();
    clock.advance(Duration::from_secs(1));
    writer.write_encoded(&payload(2)).unwrap();
    assert_eq!(writer.finish().unwrap(), 2);
    assert_eq!(dir.files(), ["req.gor", "req_1.gor"]);
    assert_eq!(read_ids(&dir.0.join("req.gor")), [0, 1]);
    assert_eq!(read_ids(&dir.0.join("req_1.gor")), [2]);
}

#[test]
fn a_taken_name_gets_a_counter_before_its_extensions_and_no_file_is_replaced() {
    for (name, n, counted) in [
        ("d.1/req.gor.gz", 1, "d.1/req_1.gor.gz"),
        ("req-2024.06.gor", 12, "req-2024.06_12.gor"),
        ("requests", 2, "requests_2"),
        ("data.gz", 3, "data_3.gz"),
        (".gor", 1, ".gor_1"),
    ] {
        assert_eq!(with_counter(Path::new(name), n), Path::new(counted));
    }

    let dir = Dir::new("collide");
    // An earlier run's files stay as they are.
    std::fs::write(dir.0.join("req-1970.gor"), b"earlier").unwrap();
    std::fs::write(dir.0.join("req-1970_1.gor"), b"earlier").unwrap();
    let clock = TestClock::at(0);
    let mut writer = writer(dir.0.join("req-%Y.gor"), None, Some(1), &clock);
    for i in 0..3 {
        writer.write_encoded(&payload(i)).unwrap();
        clock.advance(Duration::from_secs(1));
    }
    writer.finish().unwrap();
    assert_eq!(
        dir.files(),
        [
            "req-1970.gor",
            "req-1970_1.gor",
            "req-1970_2.gor",
            "req-1970_3.gor",
            "req-1970_4.gor"
        ]
    );
    assert_eq!(
        std::fs::read(dir.0.join("req-1970.gor")).unwrap(),
        b"earlier"
    );
    assert_eq!(read_ids(&dir.0.join("req-1970_4.gor")), [2]);
}

#[test]
fn a_plain_name_without_rotation_is_replaced_as_before() {
    let dir = Dir::new("plain");
    let path = dir.0.join("req.gor");
    std::fs::write(&path, b"earlier").unwrap();
    let mut writer = RotatingWriter::create(OutputPlan::single(&path)).unwrap();
    writer.write_encoded(&payload(7)).unwrap();
    assert_eq!(writer.finish().unwrap(), 1);
    assert_eq!(dir.files(), ["req.gor"]);
    assert_eq!(read_ids(&path), [7]);
}

#[test]
fn every_gzip_file_is_complete_on_its_own() {
    let dir = Dir::new("gzip");
    let mut writer = writer(
        dir.0.join("req.gor.gz"),
        Some(2048),
        None,
        &TestClock::at(0),
    );
    // Varied bytes so that the files grow.
    for i in 0..400 {
        writer.write_encoded(&payload(i * 7919 % 100_003)).unwrap();
    }
    let files = writer.finish().unwrap();
    assert!(files >= 3, "{files} files");
    let names = dir.files();
    assert_eq!(names.len() as u64, files);
    let mut total = 0;
    for name in &names {
        assert!(name.ends_with(".gor.gz"), "{name}");
        let path = dir.0.join(name);
        // A single-member decoder fails on a missing trailer or a cut
        // stream.
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
            .read_to_end(&mut text)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.ends_with(gor::SEPARATOR), "{name}");
        assert!(
            text.len() <= 2048,
            "{name}: {} bytes before gzip",
            text.len()
        );
        total += read_ids(&path).len();
    }
    assert_eq!(total, 400);
}
