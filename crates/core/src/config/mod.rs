//! The config file: parsed with spans, validated once into a [`Config`].
//!
//! Every problem is reported as `FILE:LINE:COL: message`, all at once, and
//! names what would have been valid.

mod access;
mod diagnostic;
mod plan_digest;
mod raw;
mod server;
mod validate;

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use access::{
    ADMIN_TOKEN, AUDITOR_TOKEN, Access, BucketScope, CredentialConfig, DEFAULT_CREDENTIAL, Role,
    TokenConfig,
};
pub use diagnostic::{ConfigError, Diagnostic, SourceMap};
pub use server::ServerSettings;
pub use validate::{OTHER_CATEGORY, Unsatisfied, check_satisfiable, requirement_problem};

/// The stand-in name for "any category no rule names".
pub fn validate_other_category() -> &'static str {
    OTHER_CATEGORY
}

use crate::bucket::Bucket;
use crate::exposure::{AuthoritySel, Origin, Reach, ReachRule};
use crate::ids::{Category, CustodianId, RegionId};
use crate::jurisdiction::{self, Jurisdiction};
use crate::policy::{Policy, Prefer, Rule, Target};
use crate::presets;
use crate::topology::{Custodian, Operator, Region, Topology};
use raw::{RawConfig, S};

/// A validated deployment config: the desired state.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where it was read from (for messages) and the folder relative paths
    /// are resolved against.
    pub file: String,
    pub base_dir: PathBuf,
    pub topology: Topology,
    pub catalog_url: String,
    pub secrets_file: Option<PathBuf>,
    pub buckets: Vec<Bucket>,
    pub policy: Policy,
    pub reach: Reach,
    /// The S3 API's `[[credential]]`s (their secrets are in the secrets).
    pub credentials: Vec<CredentialConfig>,
    /// The REST API's `[[token]]`s (their secrets are in the secrets).
    pub tokens: Vec<TokenConfig>,
    /// How `serve` meets the network (`[server]`).
    pub server: ServerSettings,
    /// Source text positions, for later diagnostics about rules.
    pub source: SourceMap,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            diagnostics: vec![Diagnostic {
                file: file.clone(),
                line: 1,
                col: 1,
                message: format!("cannot read config: {e}"),
            }],
        })?;
        let base = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."));
        Config::parse(&file, &text, base)
    }

    /// Parses and validates config text. `base_dir` resolves relative paths.
    pub fn parse(file: &str, text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let map = SourceMap::new(file, text);
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError {
            diagnostics: vec![map.at(&e.span().unwrap_or(0..0), e.message().trim().to_string())],
        })?;
        let mut b = Builder {
            map: map.clone(),
            base_dir: base_dir.to_path_buf(),
            diags: Vec::new(),
        };
        let config = b.build(raw, file);
        if !b.diags.is_empty() {
            return Err(ConfigError {
                diagnostics: b.diags,
            });
        }
        let config = config.ok_or_else(|| ConfigError {
            diagnostics: vec![map.at(&(0..0), "invalid config")],
        })?;
        let unsat = check_satisfiable(&config);
        if !unsat.is_empty() {
            return Err(ConfigError {
                diagnostics: unsat.iter().map(|u| u.diagnostic(&config)).collect(),
            });
        }
        Ok(config)
    }

    /// The categories this config can meet: those named by rules and
    /// buckets, sorted.
    pub fn categories(&self) -> BTreeSet<Category> {
        let mut set = self.policy.named_categories();
        for b in &self.buckets {
            set.insert(b.category.clone());
            set.extend(b.categories.iter().map(|(_, c)| c.clone()));
        }
        set
    }

    /// A digest of the config text, byte for byte. Migration jobs created
    /// before [`Config::plan_digest`] carry this one.
    pub fn digest(&self) -> String {
        blake3::hash(self.source.text().as_bytes()).to_hex()[..16].to_string()
    }

    /// A digest of what decides where data goes and who could reach it:
    /// the policy's rules, the regions (jurisdiction, provider's
    /// headquarters, prices) and custodians (jurisdiction, headquarters) by
    /// id, the operator's headquarters and the reach rules. A migration job
    /// carries out the plan of one such state, so edits that change none of
    /// it (comments, layout, a region's store URL or a custodian's keyring
    /// after moving them, names, the catalog, the buckets) leave the job
    /// resumable, and any other edit does not. The encoding is versioned
    /// and written field by field (see `plan_digest.rs`), so an upgrade
    /// does not change it.
    pub fn plan_digest(&self) -> String {
        plan_digest::digest(&self.topology, &self.policy, &self.reach)
    }

    /// Whether a migration job that recorded `digest` carries out this
    /// config's plan: by [`Config::plan_digest`], or, for jobs recorded
    /// before its encoding was versioned, by the older `Debug`-text digest
    /// or by the digest of the config text itself.
    pub fn plans_job(&self, digest: &str) -> bool {
        if digest.starts_with(&plan_digest::prefix()) {
            return digest == self.plan_digest();
        }
        digest == self.legacy_plan_digest() || digest == self.digest()
    }

    /// The plan digest that jobs recorded before its encoding was
    /// versioned: a hash of the `Debug` text of the same state.
    pub fn legacy_plan_digest(&self) -> String {
        plan_digest::legacy(&self.topology, &self.policy, &self.reach)
    }

    /// This process's config acting on the policy of `version` (a config
    /// another process applied): its rules, reach, operator, and the
    /// regions and custodians it names, reached through this config's
    /// stores and keyrings, with this config's buckets and secrets. Refused,
    /// naming what is missing or different, unless every region, custodian
    /// and bucket the version names is here and described alike (the plan
    /// digests agree): a process must never decide under rules it reads
    /// differently from the others. Regions and custodians this config has
    /// beyond the version's are left out of every decision until a version
    /// names them, so a process can be given a new region before the
    /// version that uses it is applied.
    pub fn adopt(&self, version: &Config) -> Result<Config, String> {
        let mut problems = Vec::new();
        for r in &version.topology.regions {
            match self.topology.region(r.id.as_str()) {
                None => problems.push(format!("region {} is missing", r.id)),
                Some(mine)
                    if (mine.jurisdiction, mine.provider_headquarters)
                        != (r.jurisdiction, r.provider_headquarters) =>
                {
                    problems.push(format!(
                        "region {} is in {} on a provider of {} here, in {} on a provider of {} there",
                        r.id,
                        mine.jurisdiction,
                        mine.provider_headquarters,
                        r.jurisdiction,
                        r.provider_headquarters
                    ))
                }
                Some(_) => {}
            }
        }
        for c in &version.topology.custodians {
            match self.topology.custodian(c.id.as_str()) {
                None => problems.push(format!("custodian {} is missing", c.id)),
                Some(mine)
                    if (mine.jurisdiction, mine.headquarters)
                        != (c.jurisdiction, c.headquarters) =>
                {
                    problems.push(format!(
                        "custodian {} is in {} headquartered in {} here, in {} headquartered in {} there",
                        c.id, mine.jurisdiction, mine.headquarters, c.jurisdiction, c.headquarters
                    ))
                }
                Some(_) => {}
            }
        }
        for b in &version.buckets {
            if !self.buckets.iter().any(|mine| mine.name == b.name) {
                problems.push(format!("bucket {} is missing", b.name));
            }
        }
        let mut topology = version.topology.clone();
        for r in &mut topology.regions {
            if let Some(mine) = self.topology.region(r.id.as_str()) {
                r.store = mine.store.clone();
            }
        }
        for c in &mut topology.custodians {
            if let Some(mine) = self.topology.custodian(c.id.as_str()) {
                c.keyring = mine.keyring.clone();
            }
        }
        let adopted = Config {
            topology,
            policy: version.policy.clone(),
            reach: version.reach.clone(),
            ..self.clone()
        };
        if problems.is_empty() {
            Ok(adopted)
        } else {
            Err(problems.join("; "))
        }
    }

    /// `FILE:LINE:COL` of a byte span in the config file.
    pub fn locate(&self, span: &Range<usize>, message: impl Into<String>) -> Diagnostic {
        self.source.at(span, message)
    }
}

struct Builder {
    map: SourceMap,
    base_dir: PathBuf,
    diags: Vec<Diagnostic>,
}

impl Builder {
    fn err(&mut self, span: &Range<usize>, msg: impl Into<String>) {
        self.diags.push(self.map.at(span, msg));
    }

    fn jurisdiction(&mut self, s: &S<String>) -> Option<Jurisdiction> {
        match Jurisdiction::from_str(s.get_ref()) {
            Ok(j) => Some(j),
            Err(e) => {
                self.err(&s.span(), e.to_string());
                None
            }
        }
    }

    fn parse_id<T: FromStr>(&mut self, s: &S<String>) -> Option<T>
    where
        T::Err: std::fmt::Display,
    {
        match T::from_str(s.get_ref()) {
            Ok(v) => Some(v),
            Err(e) => {
                self.err(&s.span(), e.to_string());
                None
            }
        }
    }

    /// Resolves a `file://` URL relative to the config's folder; other
    /// schemes pass through after a basic check.
    fn store_url(&mut self, s: &S<String>, what: &str) -> Option<String> {
        let url = s.get_ref();
        if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                self.err(&s.span(), format!("{what} file:// URL needs a path"));
                return None;
            }
            let p = Path::new(path);
            let full = if p.is_absolute() {
                p.to_path_buf()
            } else {
                self.base_dir.join(p)
            };
            return Some(format!("file://{}", full.display()));
        }
        if url.starts_with("s3://") || url.starts_with("memory://") {
            return Some(url.clone());
        }
        self.err(
            &s.span(),
            format!("{what} {url:?} has an unsupported scheme: expected file://PATH, s3://BUCKET or memory://"),
        );
        None
    }

    /// A custodian's keyring URL: a `file://` folder like a store's, or a
    /// key manager (`aws-kms://KEY?region=R[&endpoint=URL]`,
    /// `vault://HOST:PORT/MOUNT/KEY`, `vaults://…`), whose shape is checked
    /// here so that a typo is reported with its position.
    fn keyring_url(&mut self, s: &S<String>) -> Option<String> {
        let url = s.get_ref();
        let problem = if let Some(rest) = url.strip_prefix("aws-kms://") {
            let (key, query) = rest.split_once('?').unwrap_or((rest, ""));
            let params: Vec<(&str, &str)> = query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| p.split_once('=').unwrap_or((p, "")))
                .collect();
            if key.is_empty() {
                Some("names no key: expected aws-kms://KEY_ID_OR_ALIAS?region=REGION".to_string())
            } else if let Some((k, _)) = params
                .iter()
                .find(|(k, v)| v.is_empty() || !matches!(*k, "region" | "endpoint"))
            {
                Some(format!(
                    "has a bad parameter {k:?}: aws-kms:// takes region=REGION and endpoint=URL"
                ))
            } else if !params.iter().any(|(k, _)| *k == "region") {
                Some("needs ?region=REGION".to_string())
            } else {
                None
            }
        } else if let Some(rest) = url
            .strip_prefix("vault://")
            .or_else(|| url.strip_prefix("vaults://"))
        {
            let mut parts = rest.trim_end_matches('/').split('/');
            let address = parts.next().unwrap_or_default();
            let path: Vec<&str> = parts.collect();
            let port_ok = address
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !port_ok || path.len() < 2 || path.iter().any(|p| p.is_empty()) {
                Some("is not vault://HOST:PORT/MOUNT/KEY".to_string())
            } else {
                None
            }
        } else if url.starts_with("file://") || url.starts_with("memory://") {
            return self.store_url(s, "keyring");
        } else {
            Some(
                "has an unsupported scheme: expected file://PATH, aws-kms://KEY?region=REGION or vault://HOST:PORT/MOUNT/KEY"
                    .to_string(),
            )
        };
        match problem {
            Some(p) => {
                self.err(&s.span(), format!("keyring {url:?} {p}"));
                None
            }
            None => Some(url.clone()),
        }
    }

    fn build(&mut self, raw: RawConfig, file: &str) -> Option<Config> {
        let op = raw.operator.get_ref();
        let hq = self.jurisdiction(&op.headquarters);
        if op.name.get_ref().trim().is_empty() {
            self.err(&op.name.span(), "operator name must not be empty");
        }

        let catalog_url = match &raw.catalog {
            None => format!(
                "sqlite://{}",
                self.base_dir.join("data/catalog.db").display()
            ),
            Some(c) => self.catalog_url(&c.get_ref().url),
        };
        let secrets_file = raw.secrets.as_ref().map(|s| {
            let p = PathBuf::from(s.get_ref().file.get_ref());
            if p.is_absolute() {
                p
            } else {
                self.base_dir.join(p)
            }
        });

        let regions = self.regions(&raw);
        let custodians = self.custodians(&raw);
        if regions.is_empty() {
            self.err(
                &raw.operator.span(),
                "the config declares no [[region]]: at least one is needed",
            );
        }
        let topology = Topology {
            operator: Operator {
                name: op.name.get_ref().clone(),
                headquarters: hq?,
            },
            regions,
            custodians,
        };
        let buckets = self.buckets(&raw);
        let credentials = self.credentials(&raw.credentials, &buckets);
        let tokens = self.tokens(&raw.tokens);
        let server = self.server(raw.server.as_ref());
        let policy = Policy {
            rules: raw
                .rules
                .iter()
                .filter_map(|r| self.rule(r, &topology))
                .collect(),
        };
        if raw.rules.is_empty() {
            self.err(&raw.operator.span(), "the config declares no [[rule]]: at least one is needed (for example a default rule with homes = [\"*\"])");
        }
        let mut reach = Reach {
            rules: raw.reach.iter().flat_map(|r| self.reach(r)).collect(),
        };
        if raw.reach.is_empty() {
            // Without a word from the config, assume the widest reach: never
            // understate exposure.
            reach.rules = vec![ReachRule {
                authority: AuthoritySel::Any,
                territory: true,
                headquarters: true,
                origin: Origin::Assumed,
            }];
        }
        Some(Config {
            file: file.to_string(),
            base_dir: self.base_dir.clone(),
            topology,
            catalog_url,
            secrets_file,
            buckets,
            policy,
            reach,
            credentials,
            tokens,
            server,
            source: self.map.clone(),
        })
    }

    fn catalog_url(&mut self, url: &S<String>) -> String {
        let u = url.get_ref();
        if let Some(path) = u.strip_prefix("sqlite://") {
            let p = Path::new(path);
            let full = if p.is_absolute() {
                p.to_path_buf()
            } else {
                self.base_dir.join(p)
            };
            return format!("sqlite://{}", full.display());
        }
        if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) {
            self.err(
                &url.span(),
                format!("catalog url {u:?}: expected sqlite://PATH or postgres://USER@HOST/DB"),
            );
        }
        self.root_cert_resolved(u)
    }

    /// A PostgreSQL URL whose relative `sslrootcert=FILE` is made relative
    /// to the config's folder, as every other path in the config is.
    fn root_cert_resolved(&self, url: &str) -> String {
        let Some((head, query)) = url.split_once('?') else {
            return url.to_string();
        };
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k @ ("sslrootcert" | "ssl-root-cert" | "ssl-ca"), v))
                    if !v.is_empty() && !Path::new(v).is_absolute() =>
                {
                    format!("{k}={}", self.base_dir.join(v).display())
                }
                _ => p.to_string(),
            })
            .collect();
        format!("{head}?{}", params.join("&"))
    }

    fn regions(&mut self, raw: &RawConfig) -> Vec<Region> {
        let mut out: Vec<Region> = Vec::new();
        for r in &raw.regions {
            let r = r.get_ref();
            let id: Option<RegionId> = self.parse_id(&r.id);
            let j = self.jurisdiction(&r.jurisdiction);
            let phq = self.jurisdiction(&r.provider_headquarters);
            let store = self.store_url(&r.store, "store");
            let price = |b: &mut Builder, v: &Option<S<f64>>, what: &str| match v {
                None => 0.0,
                Some(p) if p.get_ref().is_finite() && *p.get_ref() >= 0.0 => *p.get_ref(),
                Some(p) => {
                    b.err(&p.span(), format!("{what} must be a number ≥ 0"));
                    0.0
                }
            };
            let sp = price(self, &r.storage_price_gb_month, "storage_price_gb_month");
            let ep = price(self, &r.egress_price_gb, "egress_price_gb");
            if r.provider.get_ref().trim().is_empty() {
                self.err(&r.provider.span(), "provider must not be empty");
            }
            let (Some(id), Some(j), Some(phq), Some(store)) = (id, j, phq, store) else {
                continue;
            };
            if out.iter().any(|o| o.id == id) {
                self.err(&r.id.span(), format!("region {id} is declared twice"));
                continue;
            }
            out.push(Region {
                id,
                jurisdiction: j,
                provider: r.provider.get_ref().clone(),
                provider_headquarters: phq,
                store,
                storage_price_gb_month: sp,
                egress_price_gb: ep,
            });
        }
        out
    }

    fn custodians(&mut self, raw: &RawConfig) -> Vec<Custodian> {
        let mut out: Vec<Custodian> = Vec::new();
        for c in &raw.custodians {
            let c = c.get_ref();
            let id: Option<CustodianId> = self.parse_id(&c.id);
            let j = self.jurisdiction(&c.jurisdiction);
            let hq = self.jurisdiction(&c.headquarters);
            let keyring = self.keyring_url(&c.keyring);
            let (Some(id), Some(j), Some(hq), Some(keyring)) = (id, j, hq, keyring) else {
                continue;
            };
            if out.iter().any(|o| o.id == id) {
                self.err(&c.id.span(), format!("custodian {id} is declared twice"));
                continue;
            }
            out.push(Custodian {
                id,
                jurisdiction: j,
                headquarters: hq,
                keyring,
            });
        }
        out
    }

    fn buckets(&mut self, raw: &RawConfig) -> Vec<Bucket> {
        let mut out: Vec<Bucket> = Vec::new();
        for b in &raw.buckets {
            let rb = b.get_ref();
            let mut categories = Vec::new();
            if let Some(t) = &rb.categories {
                for (pattern, value) in t.get_ref() {
                    let Some(cat) = value.as_str() else {
                        self.err(
                            &t.span(),
                            format!("bucket category for {pattern:?} must be a string"),
                        );
                        continue;
                    };
                    match Category::from_str(cat) {
                        Ok(c) => categories.push((pattern.clone(), c)),
                        Err(e) => self.err(&t.span(), e.to_string()),
                    }
                }
            }
            let Some(category) = self.parse_id::<Category>(&rb.category) else {
                continue;
            };
            match Bucket::new(
                rb.name.get_ref(),
                rb.subject.get_ref(),
                category,
                categories,
            ) {
                Ok(bucket) => {
                    if out.iter().any(|o| o.name == bucket.name) {
                        self.err(
                            &rb.name.span(),
                            format!("bucket {} is declared twice", bucket.name),
                        );
                    } else {
                        out.push(bucket);
                    }
                }
                Err(e) => self.err(&b.span(), e.to_string()),
            }
        }
        out
    }

    fn targets(&mut self, list: &S<Vec<S<String>>>, topo: &Topology) -> Vec<Target> {
        let mut out = Vec::new();
        for t in list.get_ref() {
            let s = t.get_ref().as_str();
            if s == "*" {
                out.push(Target::Any);
            } else if s.chars().any(|c| c.is_ascii_uppercase()) {
                match jurisdiction::expand(s) {
                    Ok(members) => out.push(Target::Jurisdictions {
                        label: s.to_string(),
                        members,
                    }),
                    Err(e) => self.err(&t.span(), e.to_string()),
                }
            } else if topo.region(s).is_some() {
                if let Ok(id) = RegionId::from_str(s) {
                    out.push(Target::Region(id));
                }
            } else {
                let known: Vec<&str> = topo.regions.iter().map(|r| r.id.as_str()).collect();
                self.err(
                    &t.span(),
                    format!("unknown region {s:?}: expected \"*\", a jurisdiction (IN), a group (EU, EEA) or a region id ({})", known.join(", ")),
                );
            }
        }
        out
    }

    fn jurisdiction_list(&mut self, list: &S<Vec<S<String>>>) -> Option<Vec<Jurisdiction>> {
        let mut out = Vec::new();
        for t in list.get_ref() {
            if t.get_ref() == "*" {
                return None;
            }
            match jurisdiction::expand(t.get_ref()) {
                Ok(m) => out.extend(m),
                Err(e) => self.err(&t.span(), e.to_string()),
            }
        }
        Some(out)
    }

    fn rule(&mut self, r: &S<raw::RawRule>, topo: &Topology) -> Option<Rule> {
        let span = r.span();
        let r = r.get_ref();
        let homes = r.homes.as_ref().and_then(|h| self.jurisdiction_list(h));
        let categories = match &r.categories {
            None => None,
            Some(list) if list.get_ref().iter().any(|c| c.get_ref() == "*") => None,
            Some(list) => Some(
                list.get_ref()
                    .iter()
                    .filter_map(|c| self.parse_id::<Category>(c))
                    .collect(),
            ),
        };
        let allow = r.allow.as_ref().map(|a| self.targets(a, topo));
        let deny = r
            .deny
            .as_ref()
            .map(|d| self.targets(d, topo))
            .unwrap_or_default();
        let copies = match &r.copies {
            None => None,
            Some(c) if (1..=16).contains(c.get_ref()) => Some(*c.get_ref() as u32),
            Some(c) => {
                self.err(&c.span(), "copies must be between 1 and 16");
                None
            }
        };
        let require_in = match &r.require_in {
            None => Vec::new(),
            Some(list) => {
                let mut v = Vec::new();
                for t in list.get_ref() {
                    if let Some(j) = self.jurisdiction(t) {
                        v.push(j);
                    }
                }
                v
            }
        };
        let custodian = match &r.custodian {
            None => None,
            Some(c) => {
                if topo.custodian(c.get_ref()).is_none() {
                    let known: Vec<&str> = topo.custodians.iter().map(|c| c.id.as_str()).collect();
                    self.err(
                        &c.span(),
                        format!(
                            "unknown custodian {:?}: declared custodians are [{}]",
                            c.get_ref(),
                            known.join(", ")
                        ),
                    );
                    None
                } else {
                    self.parse_id::<CustodianId>(c)
                }
            }
        };
        let prefer = match &r.prefer {
            None => None,
            Some(p) => match p.get_ref().as_str() {
                "hash" => Some(Prefer::Hash),
                "price" => Some(Prefer::Price),
                "order" => Some(Prefer::Order),
                other => {
                    self.err(
                        &p.span(),
                        format!("prefer {other:?}: expected \"hash\", \"price\" or \"order\""),
                    );
                    None
                }
            },
        };
        if r.name.get_ref().trim().is_empty() {
            self.err(&r.name.span(), "rule name must not be empty");
        }
        Some(Rule {
            name: r.name.get_ref().clone(),
            homes,
            categories,
            allow,
            deny,
            copies,
            distinct_jurisdictions: r.distinct_jurisdictions.as_ref().map(|d| *d.get_ref()),
            require_in,
            custodian,
            prefer,
            span,
        })
    }

    /// One `[[reach]]` entry: `authority` and `over`, or a `preset`
    /// (optionally narrowed by `authority`), as the ordinary rules it
    /// stands for.
    fn reach(&mut self, entry: &S<raw::RawReach>) -> Vec<ReachRule> {
        let span = entry.span();
        let line = self.map.position(span.start).0;
        let r = entry.get_ref();
        if let Some(name) = &r.preset {
            if let Some(over) = &r.over {
                self.err(
                    &over.span(),
                    format!(
                        "over does not go with preset {:?}: a preset gives its own grounds",
                        name.get_ref()
                    ),
                );
                return Vec::new();
            }
            let Some(preset) = presets::find(name.get_ref()) else {
                self.err(
                    &name.span(),
                    format!(
                        "unknown reach preset {:?}: known presets are {}",
                        name.get_ref(),
                        presets::names()
                    ),
                );
                return Vec::new();
            };
            let authority = r.authority.as_ref();
            return match preset.authorities_for(authority.map(|a| a.get_ref().as_str())) {
                Ok(members) => preset.expand(&members, line),
                Err(e) => {
                    self.err(&authority.map(|a| a.span()).unwrap_or(span), e.to_string());
                    Vec::new()
                }
            };
        }
        let (Some(authority), Some(over)) = (&r.authority, &r.over) else {
            self.err(
                &span,
                format!(
                    "[[reach]] needs authority and over, or a preset ({})",
                    presets::names()
                ),
            );
            return Vec::new();
        };
        let authority = if authority.get_ref() == "*" {
            AuthoritySel::Any
        } else {
            match jurisdiction::expand(authority.get_ref()) {
                Ok(m) => AuthoritySel::Some(m),
                Err(e) => {
                    self.err(&authority.span(), e.to_string());
                    return Vec::new();
                }
            }
        };
        let (territory, headquarters) = match over.get_ref().as_str() {
            "territory" => (true, false),
            "headquarters" => (false, true),
            other => {
                self.err(
                    &over.span(),
                    format!("over {other:?}: expected \"territory\" or \"headquarters\""),
                );
                return Vec::new();
            }
        };
        vec![ReachRule {
            authority,
            territory,
            headquarters,
            origin: Origin::Rule { line },
        }]
    }
}
