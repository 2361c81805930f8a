//! Range checks of numeric flags, shared by every subcommand's config: each names the flag and
//! the value it refuses.

use crate::error::{Error, Result};

/// `value` in (0, 1) (`lo_open`) or [0, 1).
pub fn fraction(flag: &str, value: f64, lo_open: bool) -> Result<()> {
    let ok = if lo_open {
        value > 0.0 && value < 1.0
    } else {
        (0.0..1.0).contains(&value)
    };
    if ok {
        Ok(())
    } else {
        let range = if lo_open { "(0, 1)" } else { "[0, 1)" };
        Err(Error::invalid(format!(
            "{flag} must be in {range}, got {value}"
        )))
    }
}

/// `value` finite and >= 0.
pub fn non_negative(flag: &str, value: f64) -> Result<()> {
    if value >= 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{flag} must be a non-negative number, got {value}"
        )))
    }
}

/// `value` finite and > 0.
pub fn positive(flag: &str, value: f64) -> Result<()> {
    if value > 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{flag} must be a positive number, got {value}"
        )))
    }
}

/// A count of at least one.
pub fn at_least_one(flag: &str, value: usize) -> Result<()> {
    if value >= 1 {
        Ok(())
    } else {
        Err(Error::invalid(format!("{flag} must be at least 1")))
    }
}
