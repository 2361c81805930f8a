//! `sparsegrad sweep`: its flags, and the glue from them to `sparsegrad::sweep`.

use std::path::PathBuf;

use clap::Args;
use sparsegrad::error::{Error, Result};
use sparsegrad::sweep::grid::{Entry, FlagSet, Grid, Kind};
use sparsegrad::sweep::runner::run_jobs;
use sparsegrad::sweep::scripts::{AFTER_JOBS_FILE, JOBS_FILE, SUBMIT_FILE};
use sparsegrad::sweep::{Launch, Manifest, SlurmResources, expand, write_sweep};

#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub struct SweepArgs {
    /// A TOML sweep file (docs/sweeps.md); without one, the flags give the grid.
    file: Option<PathBuf>,
    /// The sweep directory: jobs files, scripts, manifest, and runs/ with every run.
    #[arg(long)]
    out: PathBuf,
    /// Models (replace the file's `models`).
    #[arg(long = "model", value_delimiter = ',')]
    models: Vec<String>,
    /// Training methods, each a [[train]] entry with no settings of its own (added to the file's).
    #[arg(long = "method", value_delimiter = ',')]
    methods: Vec<String>,
    /// Post-training methods, each a [[posttrain]] entry reading the `dense` runs.
    #[arg(long = "posttrain-method", value_delimiter = ',')]
    posttrain_methods: Vec<String>,
    /// Target sparsities (replace the file's `sparsities`).
    #[arg(long = "sparsity", value_delimiter = ',')]
    sparsities: Vec<f64>,
    /// Seeds (replace the file's `seeds`; default 0).
    #[arg(long = "seed", value_delimiter = ',')]
    seeds: Vec<u64>,
    /// A flag of every training job: KEY=VALUE or KEY=V1,V2 (an axis), e.g. `--set epochs=2`.
    #[arg(long = "set")]
    set: Vec<String>,
    /// A flag of every post-training job, as --set.
    #[arg(long = "posttrain-set")]
    posttrain_set: Vec<String>,
    /// Run the jobs here with N parallel workers (complete runs skipped, interrupted resumed).
    #[arg(long)]
    run: Option<usize>,
    /// Threads shared by the --run workers (default: every core); each gets threads / N.
    #[arg(long)]
    threads: Option<usize>,
    /// `--threads` of each line in jobs.txt and the Slurm task's CPUs.
    #[arg(long, default_value_t = 1)]
    job_threads: usize,
    /// The binary the job lines start with (default: this executable's absolute path; give
    /// `sparsegrad` to use the one on PATH of the node running the job).
    #[arg(long)]
    binary: Option<String>,
    /// Slurm: wall-time limit of each task.
    #[arg(long, default_value = "01:00:00")]
    slurm_time: String,
    /// Slurm: memory of each task.
    #[arg(long, default_value = "2G")]
    slurm_mem: String,
    #[arg(long)]
    slurm_partition: Option<String>,
    /// Slurm: tasks of an array running at once (the %K of submit.sh).
    #[arg(long, default_value_t = 8)]
    slurm_max_parallel: usize,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn grid_of(args: &SweepArgs) -> Result<Grid> {
    let mut grid = match &args.file {
        Some(f) => Grid::from_file(f)?,
        None => Grid {
            seeds: vec![0],
            ..Grid::default()
        },
    };
    if !args.models.is_empty() {
        grid.models = args.models.clone();
    }
    if !args.sparsities.is_empty() {
        grid.sparsities = args.sparsities.clone();
    }
    if !args.seeds.is_empty() {
        grid.seeds = args.seeds.clone();
    }
    for (list, set) in [
        (&args.set, &mut grid.train_flags),
        (&args.posttrain_set, &mut grid.posttrain_flags),
    ] {
        for text in list {
            let (key, values) = Grid::parse_assignment(text)?;
            if sparsegrad::sweep::grid::RESERVED.contains(&key.as_str()) {
                return Err(Error::invalid(format!(
                    "--set {key}: set by the sweep itself (use --model, --method, --seed, --sparsity)"
                )));
            }
            set.all.insert(key, values);
        }
    }
    let entries = args
        .methods
        .iter()
        .map(|m| (Kind::Train, m))
        .chain(args.posttrain_methods.iter().map(|m| (Kind::Posttrain, m)));
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

pub fn run_sweep(args: &SweepArgs) -> Result<()> {
    if args.job_threads == 0 || args.threads == Some(0) {
        return Err(Error::invalid(
            "--threads and --job-threads must be at least 1",
        ));
    }
    let grid = grid_of(args)?;
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    let dir = args
        .out
        .canonicalize()
        .map_err(|e| Error::io(&args.out, e))?;
    let jobs = expand(&grid, &dir)?;
    let exe =
        std::env::current_exe().map_err(|e| Error::invalid(format!("this executable: {e}")))?;
    let launch = Launch {
        binary: args
            .binary
            .clone()
            .unwrap_or_else(|| exe.display().to_string()),
        threads: args.job_threads,
        slurm: SlurmResources {
            time: args.slurm_time.clone(),
            mem: args.slurm_mem.clone(),
            partition: args.slurm_partition.clone(),
            max_parallel: args.slurm_max_parallel.max(1),
        },
    };
    let manifest = Manifest { launch, jobs };
    let written = write_sweep(&dir, &manifest)?;
    let phase2 = manifest
        .jobs
        .iter()
        .filter(|j| j.kind == Kind::Posttrain)
        .count();
    println!(
        "{} jobs ({} training, {phase2} post-training) in {}",
        manifest.jobs.len(),
        manifest.jobs.len() - phase2,
        dir.display()
    );
    for f in &written {
        println!("  {}", f.display());
    }
    let d = dir.display();
    let then = if phase2 > 0 {
        format!("; parallel -j 4 < {d}/{AFTER_JOBS_FILE}")
    } else {
        String::new()
    };
    println!("run them with one of:");
    println!("  sparsegrad sweep ... --run N");
    println!("  parallel -j 4 < {d}/{JOBS_FILE}{then}");
    println!("  bash {d}/{SUBMIT_FILE}   (Slurm)");
    let Some(workers) = args.run else {
        return Ok(());
    };
    let total = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let threads = (total / workers.max(1)).max(1);
    let tally = run_jobs(&dir, &manifest.jobs, &exe, workers, threads, args.quiet)?;
    println!(
        "{} run, {} already complete, {} failed",
        tally.done,
        tally.skipped,
        tally.failed.len()
    );
    for (job, why) in &tally.failed {
        eprintln!("failed: {job}: {why}");
    }
    if tally.failed.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{} of {} jobs failed (listed above)",
            tally.failed.len(),
            manifest.jobs.len()
        )))
    }
}
