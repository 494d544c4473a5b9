//! The engine: a validated config, the catalog, the region stores and the
//! custodians' keyrings, opened once and shared by every operation.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use domicile_catalog::copy::CopyReport;
use domicile_catalog::raw::RawTable;
use domicile_catalog::{Catalog, Fence, LedgerEntry, PlacementRow};
use domicile_core::Config;
use domicile_core::ids::SubjectId;
use domicile_store::{DataKey, KeyContext, Keyring, RegionOptions, RegionStore};

use crate::error::{Error, Result};
use crate::gc::settings::{GcOptions, GcState};
use crate::secrets::{RestToken, S3Credential, Secrets, token_key_path};
use crate::tokens::Tokenizer;

/// Knobs of the data path.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Encrypt blobs. Always on in a deployment; off only in benchmarks that
    /// measure what encryption costs.
    pub encrypt: bool,
    /// Plaintext bytes per encrypted chunk.
    pub chunk_size: u32,
    /// Largest object accepted, in bytes.
    pub max_object_size: u64,
    /// How long a write waits for a move of its placement to finish.
    pub move_wait: Duration,
    /// A write that meets a region its policy now forbids moves its
    /// (subject, category) at once, if the open migration job has that
    /// unit free and it holds at most this many bytes; 0 turns this off
    /// (such writes are refused until a worker moves the unit).
    pub inline_move_max: u64,
    /// How long a write's blob is kept without its commit before it is
    /// collected as the leftover of a writer that died (a killed server).
    /// Must exceed the longest a write can take.
    pub intent_ttl: Duration,
    /// Garbage collection: how long a replaced or deleted blob stays
    /// readable (`grace`), and the bounds and backoffs of a pass.
    pub gc: GcOptions,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            encrypt: true,
            chunk_size: domicile_store::crypto::DEFAULT_CHUNK_SIZE,
            max_object_size: 5 << 30,
            move_wait: Duration::from_secs(5),
            inline_move_max: 64 << 20,
            intent_ttl: Duration::from_secs(24 * 3600),
            gc: GcOptions::default(),
        }
    }
}

const KEY_CACHE_LIMIT: usize = 65_536;

/// A wrapped data key's identity in the key cache: custodian, subject
/// token, and the BLAKE3 of the wrapped bytes.
type WrappedKeyId = (String, String, [u8; 32]);

/// What a health check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// The catalog's schema version: it answered.
    pub schema_version: i64,
    /// The policy version this process acts on now.
    pub policy_version: i64,
}

/// The policy version a process acts on, and the config it makes here
/// (see [`crate::policy`]).
#[derive(Debug)]
pub struct Acting {
    /// 0 only while the process opens a catalog that has no version yet
    /// (it then stores its file's policy as version 1).
    pub version: i64,
    pub config: Arc<Config>,
}

/// The domicile service, in process.
pub struct Engine {
    /// The config file this process was opened with.
    pub(crate) file: Arc<Config>,
    /// The policy this process acts on (see [`crate::policy`]).
    pub(crate) acting: RwLock<Arc<Acting>>,
    pub(crate) catalog: Arc<dyn Catalog>,
    pub(crate) regions: BTreeMap<String, RegionStore>,
    /// Each custodian's keyring, and whether its key is the one the catalog
    /// recorded for it.
    pub(crate) keyrings: BTreeMap<String, Custody>,
    pub(crate) tokens: Tokenizer,
    pub(crate) secrets: Secrets,
    pub(crate) options: EngineOptions,
    /// Unwrapped data keys by the identity of their wrapped form (custodian,
    /// token and the wrapped bytes' BLAKE3), never by (token, category,
    /// epoch): a subject erased and added again by another process has a
    /// new wrapped key at the same epoch, which can never hit the erased
    /// key's entry.
    keys: Mutex<HashMap<WrappedKeyId, DataKey>>,
    /// The regions garbage collection backs off from.
    pub(crate) gc: GcState,
    /// Writes' index rows waiting to be committed together.
    pub(crate) commits: Arc<crate::commits::CommitQueue>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.file.file)
            .field("regions", &self.regions.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Engine {
    /// Opens everything a config names. Secrets come from the environment
    /// and the config's secrets file.
    pub async fn open(config: Config) -> Result<Engine> {
        let secrets = Secrets::load(config.secrets_file.as_deref())?;
        Engine::open_with(config, secrets, EngineOptions::default()).await
    }

    pub async fn open_with(
        config: Config,
        secrets: Secrets,
        options: EngineOptions,
    ) -> Result<Engine> {
        let catalog = domicile_catalog::open(&config.catalog_url).await?;
        Engine::open_on(config, catalog, secrets, options).await
    }

    /// [`Engine::open_with`] on a catalog already open, for tests that
    /// put a catalog of their own (one that interleaves other processes'
    /// changes with the engine's calls) between the engine and the database.
    #[cfg(feature = "test-support")]
    pub async fn test_open_on(
        config: Config,
        catalog: Arc<dyn Catalog>,
        secrets: Secrets,
        options: EngineOptions,
    ) -> Result<Engine> {
        Engine::open_on(config, catalog, secrets, options).await
    }

    async fn open_on(
        config: Config,
        catalog: Arc<dyn Catalog>,
        secrets: Secrets,
        options: EngineOptions,
    ) -> Result<Engine> {
        let key = secrets.token_key(&token_key_path(&config.catalog_url, &config.base_dir))?;
        let tokens = Tokenizer::new(key);
        // The first opener's key fingerprint wins atomically: two servers
        // first opening a fresh catalog with different keys cannot both pass.
        let stored = catalog
            .init_setting("token_key_check", &tokens.fingerprint())
            .await?;
        if stored != tokens.fingerprint() {
            return Err(Error::Secrets(
                "the subject-token key does not match the one this catalog was created with".into(),
            ));
        }
        let mut regions = BTreeMap::new();
        for r in &config.topology.regions {
            let options = RegionOptions {
                credentials: secrets.region_credentials(r.id.as_str()),
                ..RegionOptions::default()
            };
            let store =
                RegionStore::open_with(r.id.as_str(), &r.store, &config.base_dir, &options)?;
            regions.insert(r.id.to_string(), store);
        }
        let mut keyrings = BTreeMap::new();
        for c in &config.topology.custodians {
            let options = secrets.custodian_options(c.id.as_str());
            let custody = Custody {
                keyring: custodian_keyring(catalog.as_ref(), c, &config.base_dir, &options).await?,
                url: c.keyring.clone(),
                checked: tokio::sync::OnceCell::new(),
            };
            // Checked now where it can be; a key manager that cannot be
            // reached is checked again on first use.
            if let Err(why) = custody.check(catalog.as_ref(), c.id.as_str()).await {
                tracing::warn!(custodian = %c.id, "{why}");
            }
            keyrings.insert(c.id.to_string(), custody);
        }
        let file = Arc::new(config);
        let engine = Engine {
            acting: RwLock::new(Arc::new(Acting {
                version: 0,
                config: file.clone(),
            })),
            file,
            catalog,
            regions,
            keyrings,
            tokens,
            secrets,
            options,
            keys: Mutex::new(HashMap::new()),
            gc: GcState::default(),
            commits: Arc::default(),
        };
        let acting = match engine.follow_policy().await {
            Ok(a) if a.version == 0 => engine.store_first_version().await?,
            Ok(a) => a,
            Err(Error::Config(why)) => {
                // This process cannot act on the active version. It still
                // opens (to apply a version it can act on, or to report),
                // but it acts on no version: every change it decides is
                // fenced by version 0 and refused, so it never falls back
                // to its own file's rules.
                tracing::warn!("{why}");
                return Ok(engine);
            }
            Err(e) => return Err(e),
        };
        if acting.config.plan_digest() != engine.file.plan_digest() {
            tracing::warn!(
                file = %engine.file.file,
                file_digest = %engine.file.plan_digest(),
                version = acting.version,
                active_digest = %acting.config.plan_digest(),
                "the config file's policy differs from the active version: acting on the active version"
            );
        }
        Ok(engine)
    }

    /// The catalog itself, for tests that read or break its rows. Callers
    /// of the engine never see it: they ask for what they need below.
    #[cfg(feature = "test-support")]
    pub fn test_catalog(&self) -> &Arc<dyn Catalog> {
        &self.catalog
    }

    /// Batches the write path's commit queue committed, and the commits
    /// in them (see [`crate::commits`]).
    #[cfg(feature = "test-support")]
    pub fn test_commit_batches(&self) -> (u64, u64) {
        self.commits.counts()
    }

    pub fn tokens(&self) -> &Tokenizer {
        &self.tokens
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Healthy means the catalog answers: one small read (a job's status
    /// would count every unit of the job, on every probe).
    pub async fn health(&self) -> Result<Health> {
        Ok(Health {
            schema_version: self.catalog.schema_version().await?,
            policy_version: self.acting().version,
        })
    }

    /// The ledger's entries after `after`, at most `limit`, oldest first.
    pub async fn ledger_page(&self, after: i64, limit: u32) -> Result<Vec<LedgerEntry>> {
        Ok(self.catalog.ledger_page(after, limit).await?)
    }

    /// Every ledger entry of one subject, oldest first.
    pub async fn subject_ledger(&self, id: &SubjectId) -> Result<Vec<LedgerEntry>> {
        Ok(self.catalog.ledger_of(&self.tokens.subject(id)).await?)
    }

    /// The S3 API's credentials: the config's `[[credential]]`s with their
    /// secrets, and the deployment-wide one (see
    /// [`Secrets::s3_credentials`]).
    pub fn s3_credentials(&self) -> Result<Vec<S3Credential>> {
        self.secrets.s3_credentials(&self.file.credentials)
    }

    /// The REST API's bearer tokens: the config's `[[token]]`s with their
    /// secrets, and the deployment-wide ones (see [`Secrets::rest_tokens`]).
    pub fn rest_tokens(&self) -> Result<Vec<RestToken>> {
        self.secrets.rest_tokens(&self.file.tokens)
    }

    /// Before the catalog is copied to `to_url`: makes this catalog's
    /// subject-token key the key of that one too (see
    /// [`Secrets::carry_token_key`]). Returns the key file written, if any.
    pub fn carry_token_key_to(&self, to_url: &str) -> Result<Option<PathBuf>> {
        self.secrets
            .carry_token_key(&self.file.catalog_url, to_url, &self.file.base_dir)
    }

    /// Before the catalog is copied to `to_url`: makes this catalog's
    /// ledger signing key the key of that one too (see
    /// [`Secrets::carry_ledger_key`]). Returns the key file written, if any.
    pub fn carry_ledger_key_to(&self, to_url: &str) -> Result<Option<PathBuf>> {
        self.secrets
            .carry_ledger_key(&self.file.catalog_url, to_url, &self.file.base_dir)
    }

    /// Copies this catalog, row for row, into the empty catalog `target`,
    /// then verifies the copy (see [`domicile_catalog::copy_catalog`]).
    /// `progress` sees each table's rows as they are copied.
    pub async fn copy_catalog_to(
        &self,
        target: &dyn Catalog,
        progress: impl FnMut(RawTable, u64),
    ) -> Result<CopyReport> {
        Ok(domicile_catalog::copy_catalog(self.catalog.as_ref(), target, progress).await?)
    }

    /// Replaces a region's store, for tests that inject failures.
    pub fn replace_region(&mut self, store: RegionStore) {
        self.regions.insert(store.id().to_string(), store);
    }

    pub(crate) fn region(&self, id: &str) -> Result<&RegionStore> {
        self.regions.get(id).ok_or_else(|| {
            Error::Config(format!(
                "region {id} is in the catalog but not in the config"
            ))
        })
    }

    /// The stores of `regions`, in order.
    pub(crate) fn region_stores(&self, regions: &[String]) -> Result<Vec<RegionStore>> {
        regions.iter().map(|r| self.region(r).cloned()).collect()
    }

    /// The keyring of custodian `id`, once its key is known to be the one
    /// the catalog recorded for it.
    pub(crate) async fn keyring(&self, id: &str) -> Result<&Keyring> {
        let Some(custody) = self.keyrings.get(id) else {
            return Err(Error::Config(format!(
                "custodian {id} is in the catalog but not in the config"
            )));
        };
        custody.check(self.catalog.as_ref(), id).await
    }

    /// The fence of a change to (token, category) decided at `epoch` under
    /// policy version `policy`.
    pub(crate) fn fence(token: &str, category: &str, epoch: i64, policy: i64) -> Fence {
        Fence {
            token: token.to_string(),
            category: category.to_string(),
            epoch,
            policy,
        }
    }

    /// What a placement's wrapped key is bound to.
    pub(crate) fn key_context<'a>(token: &'a str, category: &'a str) -> KeyContext<'a> {
        KeyContext::new(token, category)
    }

    /// The unwrapped data key of a placement, through its custodian.
    pub(crate) async fn data_key(&self, p: &PlacementRow) -> Result<DataKey> {
        let cache_key = (
            p.custodian.clone(),
            p.token.clone(),
            *blake3::hash(&p.wrapped_key).as_bytes(),
        );
        if let Ok(cache) = self.keys.lock()
            && let Some(k) = cache.get(&cache_key)
        {
            return Ok(k.clone());
        }
        let k = self
            .keyring(&p.custodian)
            .await?
            .unwrap(&p.wrapped_key, &Engine::key_context(&p.token, &p.category))
            .await?;
        if let Ok(mut cache) = self.keys.lock() {
            if cache.len() >= KEY_CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(cache_key, k.clone());
        }
        Ok(k)
    }

    /// Drops every cached key of a subject (after erasure or a move).
    pub(crate) fn forget_keys(&self, token: &str) {
        if let Ok(mut cache) = self.keys.lock() {
            cache.retain(|(_, t, _), _| t != token);
        }
    }
}

/// A custodian's keyring and the check of its key against the identity
/// the catalog recorded for it.
pub(crate) struct Custody {
    /// The keyring, or why it cannot be opened (its key file is missing, or
    /// its URL or secrets are unusable).
    keyring: std::result::Result<Keyring, String>,
    /// The keyring URL, for messages.
    url: String,
    /// The check's verdict once there is one: the key is the recorded one,
    /// or why it is not. A key manager that cannot be reached, or refuses
    /// to describe its key (a disabled KMS key), leaves no verdict, so the
    /// next use asks again.
    checked: tokio::sync::OnceCell<std::result::Result<(), String>>,
}

impl Custody {
    /// The keyring, if its key is the one the catalog recorded. On first
    /// use, the key's identity is recorded; of two processes racing there,
    /// the first one's wins.
    async fn check(&self, catalog: &dyn Catalog, id: &str) -> Result<&Keyring> {
        let keyring = self
            .keyring
            .as_ref()
            .map_err(|why| Error::Custody(why.clone()))?;
        let verdict = self
            .checked
            .get_or_try_init(|| async {
                let actual = keyring.identity().await?;
                let setting = format!("custodian_key:{id}");
                Ok::<_, Error>(match catalog.setting(&setting).await? {
                    Some(expected) if expected == actual => Ok(()),
                    // The key before a rotation that is under way, or whose
                    // end this process has not seen: the same custodian.
                    Some(expected) if keyring.earlier_identities().contains(&expected) => Ok(()),
                    Some(expected) => Err(format!(
                        "custodian {id}: its key at {} is {actual}, not the key {expected} the catalog recorded for it; refusing to use it",
                        self.url
                    )),
                    None => {
                        let recorded = catalog.init_setting(&setting, &actual).await?;
                        if recorded == actual {
                            Ok(())
                        } else {
                            Err(format!(
                                "custodian {id}: its key is {actual}, but the catalog recorded {recorded} for it"
                            ))
                        }
                    }
                })
            })
            .await?;
        verdict.clone().map_err(Error::Custody)?;
        Ok(keyring)
    }
}

/// Opens a custodian's keyring: a missing key makes the custodian unusable
/// (the reason is returned, naming the custodian and the key expected), and
/// no key is ever created for a custodian the catalog already knows. On
/// first use, a `file://` key is created if missing.
async fn custodian_keyring(
    catalog: &dyn Catalog,
    c: &domicile_core::topology::Custodian,
    base_dir: &std::path::Path,
    options: &domicile_store::KeyringOptions,
) -> Result<std::result::Result<Keyring, String>> {
    let setting = format!("custodian_key:{}", c.id);
    Ok(match catalog.setting(&setting).await? {
        Some(expected) => {
            match Keyring::open_existing_with(c.id.as_str(), &c.keyring, base_dir, options) {
                Ok(k) => Ok(k),
                Err(e) => Err(format!(
                    "custodian {}: its key {expected} cannot be read at {} ({e}); no new key is created for a custodian that already wraps data",
                    c.id, c.keyring
                )),
            }
        }
        None => match Keyring::open_with(c.id.as_str(), &c.keyring, base_dir, options) {
            Ok(k) => Ok(k),
            // Secrets missing for a network keyring: the custodian is
            // unusable, the others are not.
            Err(e @ domicile_store::Error::KeyManagerRefused { .. }) => Err(e.to_string()),
            Err(e) => return Err(e.into()),
        },
    })
}
