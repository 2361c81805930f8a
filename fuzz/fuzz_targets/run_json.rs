//! The run files read back: `summary.json` of training and post-training runs (what `report`
//! reads, then formats) and `metrics.jsonl` (what `--resume` reads).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsegrad::io::compare::{ComparisonRow, markdown_table};
use sparsegrad::io::runlog::MetricsLog;

mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::as_file("summary.json", data);
    let run = path.parent().unwrap();
    let summary = sparsegrad::train::trainer::read_summary(run);
    if let Ok(s) = &summary {
        markdown_table(&[ComparisonRow::from_summary("run", s)]);
    }
    common::check(summary, &path);
    let post = sparsegrad::posttrain::read_summary(run);
    if let Ok(s) = &post {
        markdown_table(&[s.comparison_row("run")]);
    }
    common::check(post, &path);
    let path = common::as_file("metrics.jsonl", data);
    common::check(MetricsLog::read(&path), &path);
});
