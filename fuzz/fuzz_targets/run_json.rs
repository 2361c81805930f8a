//! The run files read back: `summary.json` of training and post-training runs (what `report`
//! reads, then formats) and `metrics.jsonl` (what `--resume` and the best-epoch rule read).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsegrad::run::dir::read_summary;
use sparsegrad::run::log::JsonLines;
use sparsegrad::run::report::{ComparisonRow, markdown_table};
use sparsegrad::run::{EpochMetrics, PosttrainSummary, Summary};

mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::as_file("summary.json", data);
    let run = path.parent().unwrap();
    let summary = read_summary::<Summary>(run);
    if let Ok(s) = &summary {
        markdown_table(&[ComparisonRow::from_summary("run", s)]);
    }
    common::check(summary, &path);
    let post = read_summary::<PosttrainSummary>(run);
    if let Ok(s) = &post {
        markdown_table(&[ComparisonRow::from_posttrain("run", s)]);
    }
    common::check(post, &path);
    let path = common::as_file("metrics.jsonl", data);
    common::check(JsonLines::<EpochMetrics>::read(&path), &path);
});
