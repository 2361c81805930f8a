//! Sparsification: transforms, methods, budgets and reports.

pub mod report;
