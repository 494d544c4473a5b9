//! The command line, as clap parses it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::output::Format;

#[derive(Debug, Parser)]
#[command(
    name = "domicile",
    version,
    about = "Keeps every user's data in the countries its rules allow, proves where every copy is, and who could compel it."
)]
pub struct Cli {
    /// The deployment's config file.
    #[arg(
        long,
        global = true,
        env = "DOMICILE_CONFIG",
        default_value = "domicile.toml"
    )]
    pub config: PathBuf,
    /// Output format of reports (html: `report …` and `plan` only).
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The India/China story end to end, on embedded regions in a fresh folder.
    Demo {
        /// Folder to build the demo in (must be empty or absent); a temporary one by default.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Number of synthetic subjects.
        #[arg(long, default_value_t = 3000)]
        subjects: u32,
    },
    /// Writes a commented example deployment.
    Init {
        /// Target folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Serve the REST admin API and the S3-compatible API until SIGTERM or ctrl-c.
    Serve(ServeArgs),
    /// Validate and explain the policy.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Register and inspect subjects.
    #[command(subcommand)]
    Subject(SubjectCmd),
    /// Store a file as a subject's object.
    Put {
        subject: String,
        key: String,
        file: PathBuf,
        #[arg(long)]
        category: Option<String>,
    },
    /// Read a subject's object.
    Get {
        subject: String,
        key: String,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// List a subject's objects (not the parts that multipart uploads
    /// stage, unless `--all`).
    Ls {
        subject: String,
        /// Also list what multipart uploads stage (`.domicile-mpu/` parts
        /// and markers).
        #[arg(long)]
        all: bool,
    },
    /// Delete a subject's object.
    Rm { subject: String, key: String },
    /// Current placement against the policy (or another policy): what moves, what it costs, who can reach what.
    Plan {
        /// Plan against this config instead of the current one ("what if?").
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Moves to list in the table (all are in json and csv).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// With --format html: write the document to this file instead of
        /// standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Carry out the plan: move data between regions online, resumably.
    #[command(subcommand)]
    Migrate(MigrateCmd),
    /// Reports on the present.
    Report {
        #[arg(value_enum)]
        kind: ReportKind,
        /// With --format html: write the document to this file instead of
        /// standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// What an authority could compel for a subject; recorded in the ledger.
    Demand {
        #[arg(long)]
        authority: String,
        #[arg(long)]
        subject: String,
    },
    /// Legal reach: the grounds on which an authority could compel data.
    #[command(subcommand)]
    Reach(ReachCmd),
    /// The ledger.
    #[command(subcommand)]
    Ledger(LedgerCmd),
    /// The catalog itself.
    #[command(subcommand)]
    Catalog(CatalogCmd),
    /// Evidence that stands on its own: a signed bundle, and its offline check.
    #[command(subcommand)]
    Evidence(EvidenceCmd),
    /// Scan every region and check each blob against the catalog and the policy.
    Verify {
        /// Skip re-reading blobs for their checksums.
        #[arg(long)]
        quick: bool,
        /// Also open every object's data key through its custodian and check that every
        /// copy decrypts and authenticates, and that its sealed name and metadata open.
        #[arg(long)]
        deep: bool,
    },
    /// Custodians: the keys that wrap subjects' data keys.
    #[command(subcommand)]
    Custodian(CustodianCmd),
    /// Delete the blobs that are due for collection (replaced or deleted
    /// ones past their grace period, writes that never committed), as
    /// `serve` does in the background: for deployments run from the command
    /// line alone. Exits 1 if some could not be deleted everywhere (they
    /// are retried later).
    Gc,
}

#[derive(Debug, clap::Subcommand)]
pub enum CustodianCmd {
    /// Wrap every data key of a custodian again under its key's newest version, online and
    /// resumably: a file:// keyring gets its next master-vN.key; for aws-kms:// and
    /// vault:// rotate the key in the key manager first. Run again to finish one that was
    /// interrupted.
    Rotate {
        /// The custodian's id.
        name: String,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ReportKind {
    Residency,
    Exposure,
    Cost,
    Violations,
}

/// Knobs of a migration run.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Copy at most this many bytes per second (this process); 0 = unlimited.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Worker turns run at once by this process.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Most units a worker takes per turn: their catalog writes are batched
    /// and their copies share one sync per region. A worker starts at 8
    /// (or this, if fewer) and doubles its batch while turns take under
    /// 125 ms, halving it when one takes over 500 ms.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Seconds between a unit's commit and the purge of its old copies.
    #[arg(long, default_value_t = 2.0)]
    pub grace: f64,
    /// Seconds a claimed unit stays leased to a worker that stops answering.
    #[arg(long, default_value_t = 30.0)]
    pub lease: f64,
}

#[derive(Debug, Subcommand)]
pub enum MigrateCmd {
    /// Create a job from the plan and carry it out.
    Apply {
        #[command(flatten)]
        run: RunArgs,
        /// Create the job only; run it later with `migrate resume`.
        #[arg(long)]
        no_run: bool,
    },
    /// Where the open (or last) job stands.
    Status,
    /// Carry on with the open job (after a pause, a crash or `--no-run`).
    Resume {
        #[command(flatten)]
        run: RunArgs,
    },
    /// Stop the open job after the units in hand; `resume` continues it.
    Pause,
    /// Stop the open job: moved units stay moved, the rest stay where they are.
    Cancel,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Validate the config.
    Check,
    /// Why a (home, category) is placed where it is.
    Explain {
        #[arg(long)]
        home: String,
        #[arg(long)]
        category: String,
    },
    /// What changes between two configs (OLD NEW as files), or between two
    /// applied policy versions (`diff 2 3`; `diff 2` compares version 2
    /// with the active one).
    Diff { old: String, new: Option<String> },
    /// Make FILE's policy (its rules and reach) the active version for
    /// every process on this catalog, recorded in the ledger with who
    /// applied it, and start the migration it needs.
    Apply {
        file: PathBuf,
        /// Store the version without starting a migration job.
        #[arg(long)]
        no_migrate: bool,
        /// Carry the migration out in this process before returning.
        #[arg(long)]
        wait: bool,
    },
    /// The active policy version.
    Show,
    /// Every applied policy version: when, who and digest.
    History,
}

#[derive(Debug, Subcommand)]
pub enum SubjectCmd {
    /// Register a subject.
    Add {
        id: String,
        #[arg(long)]
        home: String,
    },
    /// Register subjects from a CSV file with columns subject,home.
    Import { file: PathBuf },
    /// Where a subject's data is, and who could reach it.
    Show { id: String },
    /// Change a subject's home; its data follows at the next migration.
    Rehome {
        id: String,
        #[arg(long)]
        home: String,
    },
    /// Erase a subject: purge every copy and shred its keys.
    Erase { id: String },
}

#[derive(Debug, Subcommand)]
pub enum CatalogCmd {
    /// Copy the whole catalog into another, empty one (for example
    /// postgres://USER@HOST/DB), verify the copy, and print the config line
    /// to change. Stop every server and worker first.
    MigrateTo {
        /// The target catalog's URL; its database must exist and be empty.
        url: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReachCmd {
    /// The grounds of an authority's reach under the active config: each
    /// rule or preset, its citations and summary, and what it reaches.
    /// A simplified model of the laws it cites, not legal advice.
    Explain {
        /// A jurisdiction (ISO 3166-1 alpha-2), such as CN.
        #[arg(long)]
        authority: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum LedgerCmd {
    /// The history, oldest first.
    Show {
        #[arg(long)]
        subject: Option<String>,
        /// Show at most this many entries (the newest).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Re-compute the hash chain, and check it against every signed
    /// checkpoint (stored, and those of --checkpoints). Exits 3 if the
    /// chain is broken, rewritten or cut after a checkpoint.
    Verify {
        /// Also check against the checkpoints published to this file (JSON
        /// lines, as `serve --checkpoint-file` and `ledger checkpoint
        /// --publish` append them).
        #[arg(long)]
        checkpoints: Option<PathBuf>,
    },
    /// Sign the ledger's head (its length and hash) with the ledger signing
    /// key (created on first use), store the checkpoint, and print it.
    Checkpoint {
        /// Also append the checkpoint to this file, as a JSON line.
        #[arg(long)]
        publish: Option<PathBuf>,
    },
    /// Every stored checkpoint.
    Checkpoints,
}

#[derive(Debug, Subcommand)]
pub enum EvidenceCmd {
    /// Write a signed evidence bundle: policy, verify result, residency and
    /// exposure reports, the ledger's entries with the signed checkpoints
    /// that cover them, and the public key (docs/evidence.md).
    Export {
        /// Only this subject's ledger entries (and the chain from its first
        /// entry to a checkpoint).
        #[arg(long)]
        subject: Option<String>,
        /// The bundle's file.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Check a bundle offline, with nothing but the file. Exits 3 if
    /// anything in it does not hold.
    Verify {
        file: PathBuf,
        /// The fingerprint the signing key must have (hex SHA-256 of its
        /// public key, as `ledger checkpoints` shows it).
        #[arg(long)]
        key: Option<String>,
    },
}

/// `serve`'s flags. Those about the network override the config's
/// `[server]`; what neither gives takes the server's default.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the REST admin API; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub listen: String,
    /// Address of the S3-compatible API; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:7701")]
    pub s3_listen: String,
    /// Largest object accepted through the S3 API, in bytes.
    #[arg(long, env = "DOMICILE_MAX_OBJECT_SIZE", default_value_t = 5 << 30)]
    pub max_object_size: u64,
    /// Seconds between garbage collection passes (blobs of overwritten
    /// or deleted objects, and what writers that died left, once due);
    /// 0 runs none.
    #[arg(long, env = "DOMICILE_COLLECT_EVERY", default_value_t = 60.0)]
    pub collect_every: f64,
    /// Seconds an overwritten or deleted object's old bytes stay
    /// readable (reads in flight finish) before they are collected.
    #[arg(long, env = "DOMICILE_GC_GRACE", default_value_t = 300.0)]
    pub gc_grace: f64,
    /// Seconds a multipart upload may stay incomplete before the
    /// collection passes delete its parts (default 7 days).
    #[arg(long, env = "DOMICILE_MULTIPART_EXPIRY", default_value_t = 604_800.0)]
    pub multipart_expiry: f64,
    /// PEM certificate chain (leaf first) served on both listeners;
    /// with --tls-key. Reloaded on SIGHUP and when the file changes.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, RSA or SEC1).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Seconds between checks of the TLS files for a change; 0 checks
    /// never (SIGHUP still reloads). Default 5.
    #[arg(long)]
    pub tls_check_every: Option<f64>,
    /// Serve plain HTTP on an address other than loopback (for a proxy
    /// in front that terminates TLS). Without it, such a bind is refused.
    #[arg(long)]
    pub insecure_plaintext: bool,
    /// Seconds a client has for a TLS handshake or a request's headers.
    /// Default 10.
    #[arg(long)]
    pub header_read_timeout: Option<f64>,
    /// Seconds a REST request, or an S3 request without a body, has to
    /// be answered (a response may stream longer). Default 60.
    #[arg(long)]
    pub request_timeout: Option<f64>,
    /// Open connections per listener; more wait to be accepted. Default 512.
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Requests served at once per API; more get 503 (S3 SlowDown).
    /// Default 128.
    #[arg(long)]
    pub max_in_flight: Option<usize>,
    /// Seconds between signed checkpoints of the ledger's head, while it
    /// grows; 0 signs none.
    #[arg(long, env = "DOMICILE_CHECKPOINT_EVERY", default_value_t = 0.0)]
    pub checkpoint_every: f64,
    /// Append each checkpoint to this file, as a JSON line.
    #[arg(long, env = "DOMICILE_CHECKPOINT_FILE")]
    pub checkpoint_file: Option<PathBuf>,
    /// POST each checkpoint to this URL, as JSON.
    #[arg(long, env = "DOMICILE_CHECKPOINT_URL")]
    pub checkpoint_url: Option<String>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod rest_map {
    //! Every command has a REST route, or docs/rest.md says why not.

    use std::collections::BTreeSet;

    use clap::CommandFactory;

    const DOC: &str = include_str!("../../../docs/rest.md");

    /// The leaf commands, as `group sub` (`subject add`, `plan`).
    fn leaves(cmd: &clap::Command, prefix: &str, out: &mut BTreeSet<String>) {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let name = format!("{prefix}{}", sub.get_name());
            if sub.has_subcommands() {
                leaves(sub, &format!("{name} "), out);
            } else {
                out.insert(name);
            }
        }
    }

    /// The rows of the doc's table: (command, what it says).
    fn rows() -> Vec<(String, String)> {
        DOC.lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .map(|l| {
                let (cmd, rest) = l.split_once('`').unwrap();
                let cell = rest.trim_start_matches(' ').trim_start_matches('|');
                (
                    cmd.to_string(),
                    cell.trim().trim_end_matches('|').trim().to_string(),
                )
            })
            .collect()
    }

    /// The `METHOD /path`s a cell names.
    fn routes(cell: &str) -> Vec<(String, String)> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .filter_map(|s| s.split_once(' '))
            .filter(|(m, p)| {
                ["GET", "POST", "PUT", "DELETE", "PATCH"].contains(m) && p.starts_with('/')
            })
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect()
    }

    #[test]
    fn every_command_has_a_route_or_a_reason() {
        let mut commands = BTreeSet::new();
        leaves(&super::Cli::command(), "", &mut commands);
        assert!(commands.contains("subject import") && commands.contains("gc"));
        let doc = domicile_server::rest::openapi_document();
        let mut listed = BTreeSet::new();
        for (cmd, cell) in rows() {
            assert!(
                commands.contains(&cmd),
                "docs/rest.md lists `{cmd}`, which is no command"
            );
            assert!(listed.insert(cmd.clone()), "`{cmd}` twice in docs/rest.md");
            let named = routes(&cell);
            if named.is_empty() {
                assert!(
                    cell.starts_with("not over REST: ") && cell.len() > 30,
                    "`{cmd}` has neither a route nor a reason: {cell:?}"
                );
            }
            for (method, path) in named {
                assert!(
                    doc["paths"][&path][method.to_lowercase()].is_object(),
                    "`{cmd}` names {method} {path}, which the server does not serve"
                );
            }
        }
        let missing: Vec<_> = commands.difference(&listed).collect();
        assert!(
            missing.is_empty(),
            "commands without a row in docs/rest.md: {missing:?}"
        );
    }
}
