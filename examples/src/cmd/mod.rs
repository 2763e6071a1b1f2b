//! Command groups of the `atom` CLI.

pub mod audit;
pub mod chaos;
pub mod demo;
pub mod demo_hosts;
pub mod migrate;
pub mod model;
pub mod precheck;
pub mod qasm;
pub mod replay;
pub mod runtime;
pub mod snapshot;
pub mod trust;
pub mod vqc;

/// An error from any `atom` command: a message for the user and an exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    /// What failed, precisely.
    pub message: String,
    /// Process exit code (1 = the check failed, 2 = bad usage or input).
    pub code: u8,
}

impl CliError {
    /// A failed check or operation (exit code 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 1,
        }
    }

    /// Bad input or usage (exit code 2).
    pub fn input(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 2,
        }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        self.code
    }
}
