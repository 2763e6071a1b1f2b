//! `atom migrate`: apply the PostgreSQL schema migrations of the shared state store.

use super::CliError;

/// Apply pending schema migrations (idempotent: each runs once, recorded in `schema_migrations`).
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The owner role's DSN, e.g. `host=127.0.0.1 port=5432 user=atom dbname=atom` or a
    /// `postgresql://` URL.
    #[arg(long, env = "POSTGRES_DSN", hide_env_values = true)]
    pub dsn: String,
    /// Only list the migrations this build knows, without connecting.
    #[arg(long)]
    pub list: bool,
}

/// Applies the migrations and prints what was applied.
pub fn run(args: MigrateArgs) -> Result<(), CliError> {
    if args.list {
        for m in atom_fabric::pg::MIGRATIONS {
            println!("{:03} {}", m.version, m.name);
        }
        return Ok(());
    }
    if args.dsn.trim().is_empty() {
        return Err(CliError::input("--dsn is empty"));
    }
    let applied =
        atom_fabric::pg::migrate(&args.dsn).map_err(|e| CliError::failed(e.to_string()))?;
    if applied.is_empty() {
        println!("schema is up to date");
    } else {
        for v in applied {
            let name = atom_fabric::pg::MIGRATIONS
                .iter()
                .find(|m| m.version == v)
                .map_or("?", |m| m.name);
            println!("applied {v:03} {name}");
        }
    }
    Ok(())
}
