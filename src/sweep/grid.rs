//! A sweep as written: the TOML sweep file (format in `docs/sweeps.md`) or the `sweep` command's
//! flags, read into a [`Grid`] without judging the flags yet. Whether a method exists and reads
//! a flag is decided in [`mod@crate::sweep::expand`], by parsing each job's command line with the
//! subcommand's own config (so the registry's settings lists are the only truth).

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};

/// Which subcommand a job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Train,
    Posttrain,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Train => "train",
            Kind::Posttrain => "posttrain",
        }
    }
}

/// One value of a flag: a switch (`true`: give the flag, `false`: leave it out) or a value.
#[derive(Clone, Debug, PartialEq)]
pub enum FlagValue {
    Switch(bool),
    Value(String),
}

/// Flag name (`--` and `_`/`-` spelling removed: `weight-decay`) to its values; a list of more
/// than one value is an axis of the grid.
pub type Flags = BTreeMap<String, Vec<FlagValue>>;

/// Flags for every model, and per-model overrides (a table named after a model).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlagSet {
    pub all: Flags,
    pub per_model: BTreeMap<String, Flags>,
}

impl FlagSet {
    /// The flags of `model`'s jobs: `all`, then its own table over them.
    pub fn for_model(&self, model: &str) -> Flags {
        let mut flags = self.all.clone();
        if let Some(own) = self.per_model.get(model) {
            flags.extend(own.clone());
        }
        flags
    }
}

/// One `[[train]]` or `[[posttrain]]` entry: a method with its settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub kind: Kind,
    pub method: String,
    /// The label of its runs (default: the method).
    pub name: String,
    /// Posttrain: the train entry whose run (same model and seed) it sparsifies.
    pub from: Option<String>,
    pub models: Option<Vec<String>>,
    pub sparsities: Option<Vec<f64>>,
    pub flags: FlagSet,
}

/// The whole sweep.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Grid {
    pub models: Vec<String>,
    pub seeds: Vec<u64>,
    pub sparsities: Vec<f64>,
    pub train_flags: FlagSet,
    pub posttrain_flags: FlagSet,
    pub entries: Vec<Entry>,
}

/// Settings the sweep itself sets on every job; a sweep file may not give them as flags.
pub const RESERVED: &[&str] = &[
    "model",
    "method",
    "seed",
    "out",
    "threads",
    "target-sparsity",
    "checkpoint",
    "resume",
    "force",
    "quiet",
    "finish",
];

impl Grid {
    /// Reads a sweep file.
    pub fn from_file(path: &Path) -> Result<Grid> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| Error::format(path, e.message().to_string()))?;
        Grid::from_table(&table).map_err(|e| Error::format(path, e.to_string()))
    }

    fn from_table(table: &toml::Table) -> Result<Grid> {
        let mut grid = Grid::default();
        for (key, value) in table {
            match key.as_str() {
                "models" => grid.models = strings(key, value)?,
                "seeds" => grid.seeds = seeds(value)?,
                "sparsities" => grid.sparsities = floats(key, value)?,
                "train_flags" => grid.train_flags = flag_set(key, value)?,
                "posttrain_flags" => grid.posttrain_flags = flag_set(key, value)?,
                "train" | "posttrain" => {
                    let kind = if key == "train" {
                        Kind::Train
                    } else {
                        Kind::Posttrain
                    };
                    let list = value.as_array().ok_or_else(|| {
                        Error::invalid(format!("`{key}` must be an array of tables ([[{key}]])"))
                    })?;
                    for item in list {
                        grid.entries.push(entry(kind, item)?);
                    }
                }
                other => {
                    return Err(Error::invalid(format!(
                        "unknown key `{other}` (expected models, seeds, sparsities, train_flags, posttrain_flags, [[train]], [[posttrain]])"
                    )));
                }
            }
        }
        if grid.seeds.is_empty() {
            grid.seeds = vec![0];
        }
        Ok(grid)
    }

    /// Parses `KEY=V1,V2` (a flag and its values) as given to `sweep --set`.
    pub fn parse_assignment(text: &str) -> Result<(String, Vec<FlagValue>)> {
        let (key, values) = text.split_once('=').ok_or_else(|| {
            Error::invalid(format!("--set `{text}`: expected KEY=VALUE[,VALUE...]"))
        })?;
        let values = values
            .split(',')
            .map(|v| match v {
                "true" => FlagValue::Switch(true),
                "false" => FlagValue::Switch(false),
                v => FlagValue::Value(v.to_string()),
            })
            .collect();
        Ok((flag_name(key), values))
    }
}

/// A flag's name as written on the command line, without `--`: `weight_decay` -> `weight-decay`.
pub fn flag_name(key: &str) -> String {
    key.trim_start_matches("--").replace('_', "-")
}

fn strings(key: &str, value: &toml::Value) -> Result<Vec<String>> {
    let list = match value {
        toml::Value::Array(a) => a.clone(),
        v => vec![v.clone()],
    };
    list.iter()
        .map(|v| {
            v.as_str().map(str::to_string).ok_or_else(|| {
                Error::invalid(format!("`{key}` must hold strings, got a {}", v.type_str()))
            })
        })
        .collect()
}

fn floats(key: &str, value: &toml::Value) -> Result<Vec<f64>> {
    let list = match value {
        toml::Value::Array(a) => a.clone(),
        v => vec![v.clone()],
    };
    list.iter()
        .map(|v| match v {
            toml::Value::Float(f) => Ok(*f),
            toml::Value::Integer(i) => Ok(*i as f64),
            v => Err(Error::invalid(format!(
                "`{key}` must hold numbers, got a {}",
                v.type_str()
            ))),
        })
        .collect()
}

fn seeds(value: &toml::Value) -> Result<Vec<u64>> {
    let list = match value {
        toml::Value::Array(a) => a.clone(),
        v => vec![v.clone()],
    };
    list.iter()
        .map(|v| match v {
            toml::Value::Integer(i) if *i >= 0 => Ok(*i as u64),
            v => Err(Error::invalid(format!(
                "`seeds` must hold non-negative integers, got {}",
                v.type_str()
            ))),
        })
        .collect()
}

fn flag_value(key: &str, v: &toml::Value) -> Result<FlagValue> {
    Ok(match v {
        toml::Value::Boolean(b) => FlagValue::Switch(*b),
        toml::Value::String(s) => FlagValue::Value(s.clone()),
        toml::Value::Integer(i) => FlagValue::Value(i.to_string()),
        toml::Value::Float(f) => FlagValue::Value(f.to_string()),
        v => {
            return Err(Error::invalid(format!(
                "flag `{key}`: expected a string, number, boolean or a list of them, got a {}",
                v.type_str()
            )));
        }
    })
}

/// Reads one flag (`key = value` or `key = [values]`) into `flags`, refusing reserved ones.
fn add_flag(flags: &mut Flags, key: &str, value: &toml::Value) -> Result<()> {
    let name = flag_name(key);
    if RESERVED.contains(&name.as_str()) {
        return Err(Error::invalid(format!(
            "flag `{key}` is set by the sweep itself (use models, seeds, sparsities or the entry's method)"
        )));
    }
    let values = match value {
        toml::Value::Array(a) if a.is_empty() => {
            return Err(Error::invalid(format!("flag `{key}`: empty list")));
        }
        toml::Value::Array(a) => a
            .iter()
            .map(|v| flag_value(key, v))
            .collect::<Result<_>>()?,
        v => vec![flag_value(key, v)?],
    };
    flags.insert(name, values);
    Ok(())
}

/// A table of flags, whose sub-tables are per-model overrides.
fn flag_set(key: &str, value: &toml::Value) -> Result<FlagSet> {
    let table = value
        .as_table()
        .ok_or_else(|| Error::invalid(format!("`{key}` must be a table")))?;
    let mut set = FlagSet::default();
    for (k, v) in table {
        add_flag_or_model(&mut set, k, v)?;
    }
    Ok(set)
}

fn add_flag_or_model(set: &mut FlagSet, key: &str, value: &toml::Value) -> Result<()> {
    match value {
        toml::Value::Table(t) => {
            let own = set.per_model.entry(key.to_string()).or_default();
            for (k, v) in t {
                add_flag(own, k, v)?;
            }
            Ok(())
        }
        v => add_flag(&mut set.all, key, v),
    }
}

fn entry(kind: Kind, value: &toml::Value) -> Result<Entry> {
    let table = value
        .as_table()
        .ok_or_else(|| Error::invalid(format!("[[{}]] entries must be tables", kind.as_str())))?;
    let method = table
        .get("method")
        .and_then(|m| m.as_str())
        .ok_or_else(|| Error::invalid(format!("a [[{}]] entry has no `method`", kind.as_str())))?
        .to_string();
    let context = |e: Error| Error::invalid(format!("[[{}]] `{method}`: {e}", kind.as_str()));
    let mut entry = Entry {
        kind,
        name: method.clone(),
        method: method.clone(),
        from: None,
        models: None,
        sparsities: None,
        flags: FlagSet::default(),
    };
    for (key, value) in table {
        match key.as_str() {
            "method" => {}
            "name" => entry.name = strings(key, value).map_err(context)?.concat(),
            "from" if kind == Kind::Posttrain => {
                entry.from = Some(strings(key, value).map_err(context)?.concat())
            }
            "models" => entry.models = Some(strings(key, value).map_err(context)?),
            "sparsities" => entry.sparsities = Some(floats(key, value).map_err(context)?),
            k => add_flag_or_model(&mut entry.flags, k, value).map_err(context)?,
        }
    }
    Ok(entry)
}
