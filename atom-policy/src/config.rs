//! Signing modes and the environment they come from (`PQC_MODE`, `SIMULATION_MODE`).

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::fmt;

/// How deploys, jobs and checkpoints are signed (`PQC_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PqcMode {
    /// A classical and an ML-DSA signature; both must verify. The default.
    #[default]
    Hybrid,
    /// The classical signature only.
    Classical,
    /// Unsigned: allowed only with `SIMULATION_MODE=true`.
    Off,
}

impl PqcMode {
    /// Parses `hybrid`, `classical` or `off` (case-insensitive).
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "hybrid" => Ok(PqcMode::Hybrid),
            "classical" => Ok(PqcMode::Classical),
            "off" => Ok(PqcMode::Off),
            _ => Err(Error::Config {
                name: "PQC_MODE".into(),
                value: s.into(),
                reason: "expected hybrid, classical or off".into(),
            }),
        }
    }

    /// The name as written in `PQC_MODE`.
    pub fn as_str(self) -> &'static str {
        match self {
            PqcMode::Hybrid => "hybrid",
            PqcMode::Classical => "classical",
            PqcMode::Off => "off",
        }
    }
}

impl fmt::Display for PqcMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The signing mode in force: `PQC_MODE` and whether `SIMULATION_MODE` is on.
///
/// ```
/// use atom_policy::config::{Mode, PqcMode};
/// let mode = Mode::new(PqcMode::Off, false);
/// assert!(mode.check().is_err()); // unsigned outside simulation
/// assert!(Mode::new(PqcMode::Off, true).check().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    /// `PQC_MODE`.
    pub pqc: PqcMode,
    /// `SIMULATION_MODE`.
    pub simulation: bool,
}

impl Default for Mode {
    /// Hybrid signing, production (no simulation).
    fn default() -> Self {
        Self::new(PqcMode::Hybrid, false)
    }
}

impl Mode {
    /// A mode.
    pub fn new(pqc: PqcMode, simulation: bool) -> Self {
        Self { pqc, simulation }
    }

    /// Reads `PQC_MODE` (default hybrid) and `SIMULATION_MODE` (default false) from `env`.
    pub fn from_env(env: &Env) -> Result<Self> {
        let pqc = match env.get("PQC_MODE") {
            Some(v) if !v.trim().is_empty() => PqcMode::parse(v)?,
            _ => PqcMode::Hybrid,
        };
        let simulation = parse_bool(env, "SIMULATION_MODE")?.unwrap_or(false);
        let mode = Self::new(pqc, simulation);
        mode.check()?;
        Ok(mode)
    }

    /// Refuses `PQC_MODE=off` outside simulation.
    pub fn check(&self) -> Result<()> {
        if self.pqc == PqcMode::Off && !self.simulation {
            return Err(Error::UnsignedOutsideSimulation);
        }
        Ok(())
    }
}

/// An environment: variable name → value. Built from the process environment, a `.env` file,
/// or by hand in tests (core logic never reads the process environment itself).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// An empty environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process environment.
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars().collect(),
        }
    }

    /// Sets a variable.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// A variable's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// True if the variable is set to a non-empty value.
    pub fn is_set(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| !v.trim().is_empty())
    }

    /// All variables, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Parses `.env` text (`NAME=value` lines, `#` comments, optional quotes, optional `export `).
    pub fn parse_dotenv(text: &str) -> Result<Self> {
        let mut env = Env::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (k, v) = line.split_once('=').ok_or_else(|| Error::Config {
                name: format!(".env line {}", n + 1),
                value: line.into(),
                reason: "expected NAME=value".into(),
            })?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
                .unwrap_or(v);
            env.set(k.trim(), v);
        }
        Ok(env)
    }

    /// Values from `defaults` for every variable not set (or set empty) here.
    pub fn with_defaults(mut self, defaults: &Env) -> Self {
        for (k, v) in defaults.iter() {
            if !self.is_set(k) {
                self.set(k, v);
            }
        }
        self
    }
}

/// Parses a boolean variable (`true/false/1/0/yes/no/on/off`); `None` when unset.
pub fn parse_bool(env: &Env, name: &str) -> Result<Option<bool>> {
    match env.get(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => match v.as_str() {
            "true" | "1" | "yes" | "on" => Ok(Some(true)),
            "false" | "0" | "no" | "off" => Ok(Some(false)),
            _ => Err(Error::Config {
                name: name.into(),
                value: v,
                reason: "expected true or false".into(),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn dotenv_parses_quotes_comments_export() {
        let env = Env::parse_dotenv("# c\nA=1\nexport B=\"two words\"\nC='x'\n\nD=\n").unwrap();
        assert_eq!(env.get("A"), Some("1"));
        assert_eq!(env.get("B"), Some("two words"));
        assert_eq!(env.get("C"), Some("x"));
        assert!(!env.is_set("D"));
        assert!(Env::parse_dotenv("novalue").is_err());
    }

    #[test]
    fn mode_from_env() {
        let mut env = Env::new();
        assert_eq!(Mode::from_env(&env).unwrap(), Mode::default());
        env.set("PQC_MODE", "off");
        assert!(matches!(
            Mode::from_env(&env),
            Err(Error::UnsignedOutsideSimulation)
        ));
        env.set("SIMULATION_MODE", "true");
        assert_eq!(Mode::from_env(&env).unwrap(), Mode::new(PqcMode::Off, true));
        env.set("PQC_MODE", "quantum");
        assert!(Mode::from_env(&env).is_err());
        env.set("PQC_MODE", "classical")
            .set("SIMULATION_MODE", "maybe");
        assert!(Mode::from_env(&env).is_err());
    }

    #[test]
    fn defaults_fill_only_unset() {
        let defaults = Env::parse_dotenv("A=d\nB=d").unwrap();
        let mut env = Env::new();
        env.set("A", "mine").set("B", "");
        let merged = env.with_defaults(&defaults);
        assert_eq!(merged.get("A"), Some("mine"));
        assert_eq!(merged.get("B"), Some("d"));
    }
}
