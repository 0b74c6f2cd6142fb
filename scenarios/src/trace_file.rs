//! `netpoll-sim trace`: a run's trace written to a file in bounded memory.
//!
//! The run's calls go to a spill file next to the output as they are made (43 bytes a call,
//! through a buffer: the record, and on simulated threads the [`Mark`] of the thread that made
//! it), because the labels that name each call's track, and a threaded run's schedule, are
//! complete only when the run ends. Then the spill is read back in order and the trace written
//! out one event at a time ([`trace_out::write_chrome`], [`trace_out::write_text`]; for a run
//! on simulated threads, one track per thread: [`trace_out::write_chrome_threads`],
//! [`trace_out::write_text_threads`]). Memory stays that of the run
//! itself plus the labels, whatever the trace's length: the issue-10 trace of the 100,000
//! connection main job (10.8 million calls) held 3.7 KB a call in memory before.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use netpoll_sim::trace::Record;

use crate::run::{self, Report, Request};
use crate::trace_out::{self, Mark, SPILL_LEN};

/// The trace's form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// Chrome/Perfetto trace-event JSON.
    Chrome,
    /// The compact text form, one call a line.
    Text,
}

/// Runs `req` on the simulated kernel and writes its trace to `out`. Returns the number of
/// calls written and the run's report.
///
/// ```
/// use netpoll_scenarios::registry::Registry;
/// use netpoll_scenarios::run::Request;
/// use netpoll_scenarios::trace_file;
///
/// let s = Registry::builtin().find("echo").unwrap();
/// let mut p = s.defaults();
/// p.set("conns", 2).unwrap();
/// let req = Request::sim(s, p, 1);
/// let out = std::env::temp_dir().join(format!("doc-trace-{}.txt", std::process::id()));
/// let (calls, report) = trace_file::write(&req, &out, trace_file::Form::Text).unwrap();
/// let text = std::fs::read_to_string(&out).unwrap();
/// assert_eq!(text.lines().count() as u64, calls);
/// assert!(report.failure.is_none());
/// std::fs::remove_file(&out).unwrap();
/// ```
///
/// # Errors
/// Creating, writing or reading back the files (the spill file, `out` with `.calls` added, is
/// removed in every case).
pub fn write(req: &Request, out: &Path, form: Form) -> io::Result<(u64, Report)> {
    let mut spill_path = out.as_os_str().to_owned();
    spill_path.push(".calls");
    let spill_path = PathBuf::from(spill_path);
    let r = write_via(req, out, form, &spill_path);
    // Best effort: the spill may not exist if creating it failed.
    let _ = std::fs::remove_file(&spill_path);
    r
}

fn write_via(
    req: &Request,
    out: &Path,
    form: Form,
    spill_path: &Path,
) -> io::Result<(u64, Report)> {
    // The sink cannot return an error: it keeps the first one and stops writing.
    type Spill = (BufWriter<File>, Option<io::Error>);
    let spill: Arc<Mutex<Spill>> = Arc::new(Mutex::new((
        BufWriter::with_capacity(1 << 20, File::create(spill_path)?),
        None,
    )));
    let sink = spill.clone();
    let report = run::trace_to(
        req,
        Box::new(move |r: &Record| {
            let (w, e) = &mut *sink.lock().expect("the spill is never poisoned");
            if e.is_none() {
                // The thread that makes the call, on simulated threads: it is this one.
                if let Err(err) = w.write_all(&trace_out::spill(r, Mark::here())) {
                    *e = Some(err);
                }
            }
        }),
    );
    {
        let (w, e) = &mut *spill.lock().expect("the spill is never poisoned");
        if let Some(e) = e.take() {
            return Err(e);
        }
        w.flush()?;
    }
    drop(spill);
    let mut calls = BufReader::with_capacity(1 << 20, File::open(spill_path)?);
    let mut bad = None;
    let records = std::iter::from_fn(|| {
        let mut b = [0u8; SPILL_LEN];
        match calls.read_exact(&mut b) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return None,
            Err(e) => {
                bad = Some(e);
                return None;
            }
        }
        let r = trace_out::unspill(&b);
        if r.is_none() {
            bad = Some(io::Error::new(
                io::ErrorKind::InvalidData,
                "the spill file holds a record this program did not write",
            ));
        }
        r
    });
    let mut w = BufWriter::with_capacity(1 << 20, File::create(out)?);
    let labels = &report.labels;
    let title = format!("{} seed {} ({})", req.scenario.name(), req.seed, req.params);
    let n = match (form, &report.schedule) {
        (Form::Text, None) => trace_out::write_text(records.map(|(r, _)| r), labels, &mut w)?,
        (Form::Chrome, None) => {
            trace_out::write_chrome(records.map(|(r, _)| r), labels, &title, &mut w)?
        }
        (Form::Text, Some(s)) => trace_out::write_text_threads(records, labels, s, &mut w)?,
        (Form::Chrome, Some(s)) => {
            let title = format!("{title}, by simulated thread; time axis: schedule order");
            trace_out::write_chrome_threads(records, labels, s, &title, &mut w)?
        }
    };
    if let Some(e) = bad {
        return Err(e);
    }
    w.flush()?;
    Ok((n, report))
}
