//! What `sparsegrad sweep` writes into the sweep directory, for any scheduler:
//!
//! - `jobs.txt`: the phase-1 (training) jobs, one complete shell command line each;
//! - `jobs.after.txt`: the phase-2 (post-training) jobs, which read phase-1 runs (absent when
//!   there are none);
//! - `jobs.json`: every job with its model, series, target and seed (what `report` reads);
//! - `slurm.sh`: a job-array script running line `$SLURM_ARRAY_TASK_ID` of a jobs file;
//! - `submit.sh`: submits phase 1 as one array and phase 2 as a second array that starts once
//!   every phase-1 task has ended (`--dependency=afterany`).
//!
//! Every line carries `--finish`: it does nothing if its run is complete, resumes it if
//! interrupted, and starts it otherwise, so any line can be rerun any number of times (a
//! resubmitted array, a rerun `parallel`, `sweep --run` after either) without harm.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::atomic::write_atomic;
use crate::io::json::{read_json, write_json};
use crate::run::interrupt::shell_quote;
use crate::sweep::expand::Job;
use crate::sweep::grid::Kind;

pub const JOBS_FILE: &str = "jobs.txt";
pub const AFTER_JOBS_FILE: &str = "jobs.after.txt";
pub const MANIFEST_FILE: &str = "jobs.json";
pub const SLURM_FILE: &str = "slurm.sh";
pub const SUBMIT_FILE: &str = "submit.sh";

/// How the written command lines run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    /// The binary at the start of every line (absolute path, or a name on `PATH`).
    pub binary: String,
    /// `--threads` of every line, and the Slurm task's CPUs.
    pub threads: usize,
    /// Slurm resources.
    pub slurm: SlurmResources,
}

/// The `#SBATCH` lines of `slurm.sh`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlurmResources {
    /// `--time`, e.g. `00:30:00`.
    pub time: String,
    /// `--mem`, e.g. `2G`.
    pub mem: String,
    pub partition: Option<String>,
    /// The `%K` of the arrays in `submit.sh`: tasks running at once.
    pub max_parallel: usize,
}

/// `jobs.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub launch: Launch,
    pub jobs: Vec<Job>,
}

/// The job's complete command line.
pub fn command_line(job: &Job, launch: &Launch) -> String {
    std::iter::once(launch.binary.clone())
        .chain(job.argv(launch.threads))
        .map(|a| shell_quote(&a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads the `jobs.json` of a sweep directory.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    if !path.exists() {
        return Err(Error::invalid(format!(
            "{} holds no {MANIFEST_FILE} (not a sweep directory written by `sparsegrad sweep`)",
            dir.display()
        )));
    }
    read_json(&path)
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    write_atomic(path, text.as_bytes())
}

fn make_executable(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

/// Writes every file of the sweep directory `dir`; returns the jobs files written.
pub fn write_sweep(dir: &Path, manifest: &Manifest) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir.join("logs")).map_err(|e| Error::io(dir, e))?;
    let lines = |kind: Kind| -> Vec<String> {
        manifest
            .jobs
            .iter()
            .filter(|j| j.kind == kind)
            .map(|j| command_line(j, &manifest.launch) + "\n")
            .collect()
    };
    let (first, after) = (lines(Kind::Train), lines(Kind::Posttrain));
    let mut written = vec![dir.join(JOBS_FILE)];
    write_text(&dir.join(JOBS_FILE), &first.concat())?;
    let _ = std::fs::remove_file(dir.join(AFTER_JOBS_FILE));
    if !after.is_empty() {
        write_text(&dir.join(AFTER_JOBS_FILE), &after.concat())?;
        written.push(dir.join(AFTER_JOBS_FILE));
    }
    write_json(&dir.join(MANIFEST_FILE), manifest)?;
    let slurm = dir.join(SLURM_FILE);
    write_text(&slurm, &slurm_script(dir, &manifest.launch))?;
    make_executable(&slurm)?;
    let submit = dir.join(SUBMIT_FILE);
    write_text(
        &submit,
        &submit_script(dir, first.len(), after.len(), &manifest.launch),
    )?;
    make_executable(&submit)?;
    Ok(written)
}

fn slurm_script(dir: &Path, launch: &Launch) -> String {
    let r = &launch.slurm;
    let partition = r
        .partition
        .as_ref()
        .map(|p| format!("#SBATCH --partition={p}\n"))
        .unwrap_or_default();
    let raw = dir.display().to_string();
    let dir = shell_quote(&raw);
    format!(
        "#!/bin/bash\n\
         # One task of a sparsegrad sweep: runs line $SLURM_ARRAY_TASK_ID of a jobs file.\n\
         #   sbatch --array=1-N%K slurm.sh [JOBS_FILE]   (default jobs.txt; see submit.sh)\n\
         # Lines are idempotent (--finish): resubmitting a task skips or resumes its run.\n\
         #SBATCH --job-name=sparsegrad-sweep\n\
         #SBATCH --cpus-per-task={threads}\n\
         #SBATCH --mem={mem}\n\
         #SBATCH --time={time}\n\
         {partition}\
         #SBATCH --output={raw}/logs/slurm-%A_%a.out\n\
         set -euo pipefail\n\
         jobs=${{1:-{dir}/{JOBS_FILE}}}\n\
         line=$(sed -n \"${{SLURM_ARRAY_TASK_ID}}p\" \"$jobs\")\n\
         if [ -z \"$line\" ]; then echo \"no line $SLURM_ARRAY_TASK_ID in $jobs\" >&2; exit 1; fi\n\
         echo \"$line\"\n\
         exec bash -c \"$line\"\n",
        threads = launch.threads,
        mem = r.mem,
        time = r.time,
    )
}

fn submit_script(dir: &Path, first: usize, after: usize, launch: &Launch) -> String {
    let dir = shell_quote(&dir.display().to_string());
    let k = launch.slurm.max_parallel;
    let mut s = format!(
        "#!/bin/bash\n\
         # Submits the sweep: phase 1 ({JOBS_FILE}, {first} tasks), then phase 2\n\
         # ({AFTER_JOBS_FILE}, {after} tasks) once every phase-1 task has ended.\n\
         # K (tasks at once per array) defaults to {k}: bash submit.sh [K]\n\
         set -euo pipefail\n\
         k=${{1:-{k}}}\n\
         first=$(sbatch --parsable --array=1-{first}%$k {dir}/{SLURM_FILE} {dir}/{JOBS_FILE})\n\
         echo \"phase 1: job $first\"\n"
    );
    if after > 0 {
        s += &format!(
            "after=$(sbatch --parsable --dependency=afterany:$first --array=1-{after}%$k {dir}/{SLURM_FILE} {dir}/{AFTER_JOBS_FILE})\n\
             echo \"phase 2: job $after\"\n"
        );
    }
    s
}
