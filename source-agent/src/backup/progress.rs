//! The progress line: files, bytes, throughput and ETA, every second on a terminal, every
//! ten seconds otherwise (logs stay readable).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::pipeline::Progress;

pub use seedship_proto::human::bytes as human_bytes;

pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m{:02}s", s / 3600, (s % 3600) / 60, s % 60)
    } else {
        format!("{:02}m{:02}s", s / 60, s % 60)
    }
}

pub struct Display {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Display {
    pub fn start(p: Arc<Progress>, total_files: u64, total_bytes: u64, quiet: bool) -> Display {
        Display::start_with(
            move || (p.files.load(Ordering::Relaxed), total_files, p.bytes.load(Ordering::Relaxed), total_bytes),
            quiet,
        )
    }

    /// A display of whatever `counts` returns: (files, of files, bytes, of bytes).
    pub fn start_with(counts: impl Fn() -> (u64, u64, u64, u64) + Send + 'static, quiet: bool) -> Display {
        let stop = Arc::new(AtomicBool::new(false));
        let tty = std::io::stderr().is_terminal();
        let every = if tty { Duration::from_secs(1) } else { Duration::from_secs(10) };
        let s2 = stop.clone();
        let handle = (!quiet).then(|| {
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut last = Instant::now();
                while !s2.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    if last.elapsed() < every {
                        continue;
                    }
                    last = Instant::now();
                    let (files, total_files, bytes, total_bytes) = counts();
                    let line = line(files, total_files, bytes, total_bytes, start.elapsed());
                    let mut err = std::io::stderr();
                    if tty {
                        let _ = write!(err, "\r{line}\x1b[K");
                    } else {
                        let _ = writeln!(err, "{line}");
                    }
                }
                if tty {
                    let _ = writeln!(std::io::stderr());
                }
            })
        });
        Display { stop, handle }
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn line(files: u64, total_files: u64, bytes: u64, total_bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    let rate = bytes as f64 / secs;
    let eta = if rate > 0.0 && total_bytes > bytes {
        human_duration(Duration::from_secs_f64((total_bytes - bytes) as f64 / rate))
    } else {
        "--".into()
    };
    format!(
        "[{}] {files}/{total_files} files, {} / {}, {:.0} MB/s, ETA {eta}",
        human_duration(elapsed),
        human_bytes(bytes),
        human_bytes(total_bytes),
        rate / 1e6
    )
}
