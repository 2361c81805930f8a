//! `sparsegrad sweep --run N`: the jobs run here, N at a time, each a child process running the
//! job's command line with `threads` = its share of the machine. A job whose run directory holds
//! a `summary.json` is skipped; the others run with `--finish` (resume if interrupted). A
//! post-training job starts as soon as the training run it reads has ended, not after the whole
//! first phase; if that run failed, the job is not started and is reported failed.
//!
//! Each job's output goes to `DIR/logs/MODEL-SETTING-seedN.log`; one progress bar counts jobs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::{Error, Result};
use crate::run::dir::SUMMARY_FILE;
use crate::sweep::expand::Job;

/// What became of one job.
#[derive(Clone, Debug, PartialEq)]
pub enum JobState {
    Pending,
    Running,
    /// Its run was already complete.
    Skipped,
    Done,
    /// The message says why (exit status and log, or the failed run it needed).
    Failed(String),
}

/// What a worker does next.
enum Next {
    Run(usize),
    /// Wait for a running job to end: a pending one reads its run.
    Wait,
    Finished,
}

/// The tally of a local run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunTally {
    pub done: usize,
    pub skipped: usize,
    /// (job label, why).
    pub failed: Vec<(String, String)>,
}

/// The log file of `job` in sweep directory `dir`.
pub fn log_file(dir: &Path, job: &Job) -> PathBuf {
    dir.join("logs")
        .join(format!("{}.log", job.label().replace('/', "-")))
}

/// Runs `jobs` with `workers` processes of `threads` threads each, using `binary`.
pub fn run_jobs(
    dir: &Path,
    jobs: &[Job],
    binary: &Path,
    workers: usize,
    threads: usize,
    quiet: bool,
) -> Result<RunTally> {
    if workers == 0 {
        return Err(Error::invalid("--run must be at least 1"));
    }
    std::fs::create_dir_all(dir.join("logs")).map_err(|e| Error::io(dir, e))?;
    let index: HashMap<&Path, usize> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.out.as_path(), i))
        .collect();
    let needs: Vec<Option<usize>> = jobs
        .iter()
        .map(|j| j.needs.as_deref().and_then(|n| index.get(n).copied()))
        .collect();
    let states = Mutex::new(vec![JobState::Pending; jobs.len()]);
    let changed = Condvar::new();
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::with_draw_target(Some(jobs.len() as u64), ProgressDrawTarget::stderr())
    };
    bar.set_style(
        ProgressStyle::with_template(
            "sweep [{bar:30}] {pos}/{len} jobs {elapsed} (eta {eta}) {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    // The next job to start: the first pending one whose training run (if any) has ended.
    let next = |states: &mut Vec<JobState>| -> Next {
        let mut waiting = false;
        for i in 0..jobs.len() {
            if states[i] != JobState::Pending {
                continue;
            }
            match needs[i].map(|n| (n, states[n].clone())) {
                Some((_, JobState::Pending | JobState::Running)) => waiting = true,
                Some((n, JobState::Failed(_))) => {
                    states[i] = JobState::Failed(format!(
                        "not started: the run it reads failed ({})",
                        jobs[n].label()
                    ));
                    bar.inc(1);
                }
                _ => {
                    states[i] = JobState::Running;
                    return Next::Run(i);
                }
            }
        }
        if waiting { Next::Wait } else { Next::Finished }
    };
    std::thread::scope(|scope| {
        for _ in 0..workers.min(jobs.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let mut guard = states.lock().expect("no worker panics");
                    let i = loop {
                        match next(&mut guard) {
                            Next::Wait => guard = changed.wait(guard).expect("no worker panics"),
                            Next::Run(i) => break i,
                            Next::Finished => {
                                drop(guard);
                                changed.notify_all();
                                return;
                            }
                        }
                    };
                    drop(guard);
                    let state = run_one(dir, &jobs[i], binary, threads);
                    bar.set_message(format!("{} {}", jobs[i].label(), describe(&state)));
                    bar.inc(1);
                    states.lock().expect("no worker panics")[i] = state;
                    changed.notify_all();
                }
            });
        }
    });
    bar.finish();
    let mut tally = RunTally::default();
    for (job, state) in jobs
        .iter()
        .zip(states.into_inner().expect("no worker panics"))
    {
        match state {
            JobState::Done => tally.done += 1,
            JobState::Skipped => tally.skipped += 1,
            JobState::Failed(why) => tally.failed.push((job.label(), why)),
            JobState::Pending | JobState::Running => {
                unreachable!("every job ends")
            }
        }
    }
    Ok(tally)
}

fn describe(state: &JobState) -> &'static str {
    match state {
        JobState::Skipped => "complete",
        JobState::Done => "done",
        JobState::Failed(_) => "FAILED",
        _ => "",
    }
}

/// Runs one job to its end.
fn run_one(dir: &Path, job: &Job, binary: &Path, threads: usize) -> JobState {
    if job.out.join(SUMMARY_FILE).exists() {
        return JobState::Skipped;
    }
    let log = log_file(dir, job);
    let file = match std::fs::File::create(&log) {
        Ok(f) => f,
        Err(e) => return JobState::Failed(format!("{}: {e}", log.display())),
    };
    let err = match file.try_clone() {
        Ok(f) => f,
        Err(e) => return JobState::Failed(format!("{}: {e}", log.display())),
    };
    let status = Command::new(binary)
        .args(job.argv(threads))
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .status();
    match status {
        Ok(s) if s.success() => JobState::Done,
        Ok(s) => JobState::Failed(format!("{s}; see {}", log.display())),
        Err(e) => JobState::Failed(format!("{}: {e}", binary.display())),
    }
}
