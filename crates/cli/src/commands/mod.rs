//! One module per command group; [`run`] dispatches.
//!
//! - [`subject`]: `subject add`, `import`, `show`, `rehome`, `erase`.
//! - [`data`]: `put`, `get`, `ls`, `rm`.
//! - [`policy`]: `policy check`, `explain`, `diff` of config files.
//! - [`versions`]: `policy apply`, `show`, `history`, `diff` of applied
//!   versions: the policy as catalog state.
//! - [`plan`]: `plan`, the moves a config would make.
//! - [`report`]: `report residency`, `exposure`, `cost`, `violations`;
//!   each also as an HTML document with charts.
//! - [`demand`]: `demand`, what an authority could compel.
//! - [`reach`]: `reach explain`, the grounds of an authority's reach.
//! - [`ledger`]: `ledger verify`, `show`, `checkpoint`, `checkpoints`.
//! - [`evidence`]: `evidence export`, and `evidence verify`, offline.
//! - [`verify`]: `verify`, region scans against catalog and policy;
//!   `--deep` opens every object through its custodian.
//! - [`custodian`]: `custodian rotate`, every data key of a custodian
//!   wrapped again under its key's newest version.
//!
//! Migration jobs, the catalog's move, the demo, `init` and `serve` have
//! their own modules at the crate's top.

mod custodian;
mod data;
mod demand;
mod evidence;
mod gc;
mod ledger;
mod plan;
mod policy;
mod reach;
mod report;
mod subject;
mod verify;
mod versions;

use std::str::FromStr;

use anyhow::Result;
use domicile_core::ids::SubjectId;
use domicile_core::jurisdiction::Jurisdiction;
use domicile_engine::Engine;

use crate::cli::{Cli, Command};
use crate::config_file::load;
use crate::output::Format;

pub async fn run(cli: Cli) -> Result<u8> {
    let format = cli.format;
    if format == Format::Html
        && !matches!(cli.command, Command::Report { .. } | Command::Plan { .. })
    {
        return Err(crate::output::html_unsupported().into());
    }
    match cli.command {
        Command::Demo { dir, subjects } => crate::demo::run(dir, subjects).await,
        Command::Init { dir } => crate::init::run(&dir),
        Command::Policy(cmd) => match versions::route(cmd) {
            Ok(cmd) => {
                let engine = Engine::open(load(&cli.config)?).await?;
                versions::run(&engine, format, cmd).await
            }
            Err(cmd) => policy::run(&cli.config, format, cmd),
        },
        Command::Serve(args) => crate::serve::run(&cli.config, args).await,
        Command::Catalog(cmd) => crate::catalog::run(&cli.config, format, cmd).await,
        Command::Evidence(crate::cli::EvidenceCmd::Verify { file, key }) => {
            evidence::verify(format, &file, key.as_deref())
        }
        command => {
            let config = load(&cli.config)?;
            let secrets = domicile_engine::Secrets::load(config.secrets_file.as_deref())?;
            let options = domicile_engine::EngineOptions {
                gc: domicile_engine::GcOptions {
                    grace: crate::serve::gc_grace_from_env()?,
                    ..Default::default()
                },
                ..Default::default()
            };
            let engine = Engine::open_with(config, secrets, options).await?;
            with_engine(&engine, format, command).await
        }
    }
}

fn jurisdiction(s: &str) -> Result<Jurisdiction> {
    Ok(Jurisdiction::from_str(s)?)
}

fn subject(s: &str) -> Result<SubjectId> {
    Ok(SubjectId::from_str(s)?)
}

async fn with_engine(engine: &Engine, format: Format, command: Command) -> Result<u8> {
    match command {
        Command::Subject(cmd) => subject::run(engine, format, cmd).await,
        Command::Put {
            subject: id,
            key,
            file,
            category,
        } => data::put(engine, format, id, key, file, category).await,
        Command::Get {
            subject: id,
            key,
            output,
        } => data::get(engine, id, key, output).await,
        Command::Ls { subject: id, all } => data::ls(engine, format, id, all).await,
        Command::Rm { subject: id, key } => data::rm(engine, id, key).await,
        Command::Migrate(cmd) => crate::migrate::command(engine, format, cmd).await,
        Command::Plan {
            policy,
            limit,
            output,
        } => plan::run(engine, format, policy.as_deref(), limit, output.as_deref()).await,
        Command::Report { kind, output } => {
            report::run(engine, format, kind, output.as_deref()).await
        }
        Command::Demand {
            authority,
            subject: id,
        } => demand::run(engine, format, authority, id).await,
        Command::Reach(cmd) => reach::run(engine, format, cmd),
        Command::Ledger(cmd) => ledger::run(engine, format, cmd).await,
        Command::Verify { quick, deep } => verify::run(engine, format, quick, deep).await,
        Command::Gc => gc::run(engine, format).await,
        Command::Custodian(cmd) => custodian::run(engine, format, cmd).await,
        Command::Evidence(cmd) => evidence::run(engine, format, cmd).await,
        Command::Demo { .. }
        | Command::Init { .. }
        | Command::Policy(_)
        | Command::Serve(_)
        | Command::Catalog(_) => Ok(0),
    }
}
