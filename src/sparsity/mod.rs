//! Sparsification: transforms, methods, budgets and reports.

pub mod budget;
pub mod report;
