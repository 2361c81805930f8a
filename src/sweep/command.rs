//! `sparsegrad sweep`: its flags ([`SweepArgs`]), and from them the sweep directory
//! ([`SweepArgs::plan`]) and the local run of its jobs ([`SweepArgs::run_here`]). The binary
//! only prints what these return.

use std::path::PathBuf;

use clap::Args;

use crate::error::{Error, Result};
use crate::sweep::grid::{Entry, FlagSet, Grid, Kind, RESERVED};
use crate::sweep::runner::{RunTally, run_jobs};
use crate::sweep::scripts::{AFTER_JOBS_FILE, JOBS_FILE, SUBMIT_FILE};
use crate::sweep::{Launch, Manifest, SlurmResources, expand, write_sweep};

#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub struct SweepArgs {
    /// A TOML sweep file (docs/sweeps.md); without one, the flags give the grid.
    pub file: Option<PathBuf>,
    /// The sweep directory: jobs files, scripts, manifest, and runs/ with every run.
    #[arg(long)]
    pub out: PathBuf,
    /// Models (replace the file's `models`, and narrow the entries that name their own).
    #[arg(long = "model", value_delimiter = ',')]
    pub models: Vec<String>,
    /// Training methods, each a `[[train]]` entry with no settings of its own (added to the file's).
    #[arg(long = "method", value_delimiter = ',')]
    pub methods: Vec<String>,
    /// Post-training methods, each a `[[posttrain]]` entry reading the `dense` runs.
    #[arg(long = "posttrain-method", value_delimiter = ',')]
    pub posttrain_methods: Vec<String>,
    /// Target sparsities (replace the file's `sparsities`).
    #[arg(long = "sparsity", value_delimiter = ',')]
    pub sparsities: Vec<f64>,
    /// Seeds (replace the file's `seeds`; default 0).
    #[arg(long = "seed", value_delimiter = ',')]
    pub seeds: Vec<u64>,
    /// A flag of every training job: KEY=VALUE or KEY=V1,V2 (an axis), e.g. `--set epochs=2`.
    #[arg(long = "set")]
    pub set: Vec<String>,
    /// A flag of every post-training job, as --set.
    #[arg(long = "posttrain-set")]
    pub posttrain_set: Vec<String>,
    /// Run the jobs here with N parallel workers (complete runs skipped, interrupted resumed).
    #[arg(long)]
    pub run: Option<usize>,
    /// Threads shared by the --run workers (default: every core); each gets threads / N.
    #[arg(long)]
    pub threads: Option<usize>,
    /// `--threads` of each line in jobs.txt and the Slurm task's CPUs.
    #[arg(long, default_value_t = 1)]
    pub job_threads: usize,
    /// The binary the job lines start with (default: this executable's absolute path; give
    /// `sparsegrad` to use the one on PATH of the node running the job).
    #[arg(long)]
    pub binary: Option<String>,
    /// Slurm: wall-time limit of each task.
    #[arg(long, default_value = "01:00:00")]
    pub slurm_time: String,
    /// Slurm: memory of each task.
    #[arg(long, default_value = "2G")]
    pub slurm_mem: String,
    #[arg(long)]
    pub slurm_partition: Option<String>,
    /// Slurm: tasks of an array running at once (the %K of submit.sh).
    #[arg(long, default_value_t = 8)]
    pub slurm_max_parallel: usize,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// A sweep directory written by [`SweepArgs::plan`].
#[derive(Clone, Debug)]
pub struct Plan {
    /// The sweep directory (absolute).
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// The files written.
    pub written: Vec<PathBuf>,
    /// This executable, which `--run` starts for every job.
    exe: PathBuf,
}

impl Plan {
    /// The jobs of phase 2 (post-training, reading phase 1's runs).
    pub fn posttrain_jobs(&self) -> usize {
        let posttrain = |j: &&crate::sweep::Job| j.kind == Kind::Posttrain;
        self.manifest.jobs.iter().filter(posttrain).count()
    }

    /// What was written and the ways to run it, for the terminal.
    pub fn describe(&self) -> String {
        let total = self.manifest.jobs.len();
        let phase2 = self.posttrain_jobs();
        let d = self.dir.display();
        let mut text = format!(
            "{total} jobs ({} training, {phase2} post-training) in {d}\n",
            total - phase2
        );
        for f in &self.written {
            text += &format!("  {}\n", f.display());
        }
        let then = if phase2 > 0 {
            format!("; parallel -j 4 < {d}/{AFTER_JOBS_FILE}")
        } else {
            String::new()
        };
        text += "run them with one of:\n  sparsegrad sweep ... --run N\n";
        text += &format!("  parallel -j 4 < {d}/{JOBS_FILE}{then}\n");
        text += &format!("  bash {d}/{SUBMIT_FILE}   (Slurm)\n");
        text
    }
}

impl SweepArgs {
    /// The grid: the sweep file (if any) with the flags applied over it.
    pub fn grid(&self) -> Result<Grid> {
        let mut grid = match &self.file {
            Some(f) => Grid::from_file(f)?,
            None => Grid {
                seeds: vec![0],
                ..Grid::default()
            },
        };
        if !self.models.is_empty() {
            grid.models = self.models.clone();
            // Entries naming their own models are narrowed too (an entry left with none goes).
            for entry in &mut grid.entries {
                if let Some(models) = &mut entry.models {
                    models.retain(|m| self.models.contains(m));
                }
            }
            grid.entries
                .retain(|e| e.models.as_ref().is_none_or(|m| !m.is_empty()));
        }
        if !self.sparsities.is_empty() {
            grid.sparsities = self.sparsities.clone();
        }
        if !self.seeds.is_empty() {
            grid.seeds = self.seeds.clone();
        }
        for (list, set) in [
            (&self.set, &mut grid.train_flags),
            (&self.posttrain_set, &mut grid.posttrain_flags),
        ] {
            for text in list {
                let (key, values) = Grid::parse_assignment(text)?;
                if RESERVED.contains(&key.as_str()) {
                    return Err(Error::invalid(format!(
                        "--set {key}: set by the sweep itself (use --model, --method, --seed, --sparsity)"
                    )));
                }
                set.all.insert(key, values);
            }
        }
        let entries = self
            .methods
            .iter()
            .map(|m| (Kind::Train, m))
            .chain(self.posttrain_methods.iter().map(|m| (Kind::Posttrain, m)));
        for (kind, method) in entries {
            grid.entries.push(Entry {
                kind,
                method: method.clone(),
                name: method.clone(),
                from: None,
                models: None,
                sparsities: None,
                flags: FlagSet::default(),
            });
        }
        Ok(grid)
    }

    /// Checks the flags, expands the grid into jobs and writes the sweep directory (jobs files,
    /// Slurm scripts, manifest).
    pub fn plan(&self) -> Result<Plan> {
        if self.job_threads == 0 || self.threads == Some(0) {
            return Err(Error::invalid(
                "--threads and --job-threads must be at least 1",
            ));
        }
        let grid = self.grid()?;
        std::fs::create_dir_all(&self.out).map_err(|e| Error::io(&self.out, e))?;
        let dir = self
            .out
            .canonicalize()
            .map_err(|e| Error::io(&self.out, e))?;
        let jobs = expand(&grid, &dir)?;
        let exe =
            std::env::current_exe().map_err(|e| Error::invalid(format!("this executable: {e}")))?;
        let launch = Launch {
            binary: self
                .binary
                .clone()
                .unwrap_or_else(|| exe.display().to_string()),
            threads: self.job_threads,
            slurm: SlurmResources {
                time: self.slurm_time.clone(),
                mem: self.slurm_mem.clone(),
                partition: self.slurm_partition.clone(),
                max_parallel: self.slurm_max_parallel.max(1),
            },
        };
        let manifest = Manifest { launch, jobs };
        let written = write_sweep(&dir, &manifest)?;
        Ok(Plan {
            dir,
            manifest,
            written,
            exe,
        })
    }

    /// With `--run N`, runs the plan's jobs here on N workers sharing `--threads` (default:
    /// every core); `None` without `--run`.
    pub fn run_here(&self, plan: &Plan) -> Result<Option<RunTally>> {
        let Some(workers) = self.run else {
            return Ok(None);
        };
        let total = self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        let threads = (total / workers.max(1)).max(1);
        let jobs = &plan.manifest.jobs;
        run_jobs(&plan.dir, jobs, &plan.exe, workers, threads, self.quiet).map(Some)
    }
}
