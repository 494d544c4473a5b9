//! A turn's moves: each unit's placement and home read for the whole
//! batch, the moving marks set in one transaction, every copy made (or,
//! for a unit whose custodian changes, every object re-keyed: see
//! [`super::rekey`]) and synced, and the commits written in one
//! transaction.

use std::collections::BTreeSet;

use domicile_catalog::{
    LedgerAppend, MoveMark, PlacementRow, RekeyedObject, SubjectRow, UnitMove, UnitRow,
};
use domicile_core::ids::RegionId;
use domicile_core::jurisdiction::Jurisdiction;
use serde_json::json;

use super::copy::{COPIES_PER_TURN, Copied};
use super::rekey::NewKey;
use super::worker::{MigrationWorker, committed};
use crate::clock::now_millis;
use crate::engine::Engine;
use crate::error::{Error, Result};

/// What a unit's move needs, read before its moving mark is set.
#[derive(Debug)]
enum Prepared {
    /// Already where the policy wants it (or erased): nothing to copy.
    Nothing,
    /// It moves.
    Move(Box<Route>),
}

/// A unit's move in a batch: the unit's place in the batch, its placement
/// now, the regions and custodian it goes to, and, when the custodian
/// changes, the fresh data key its objects are re-keyed under.
#[derive(Debug)]
struct Route {
    unit: usize,
    p: PlacementRow,
    to: Vec<String>,
    custodian_to: String,
    new_key: Option<NewKey>,
}

impl MigrationWorker<'_> {
    /// Moves a batch of units (one worker turn). Idempotent. Each unit
    /// ends committed (its commit releases it, with its receipt, in one
    /// transaction for the whole batch), with nothing to move, or failed
    /// (its mark cleared, retried later): one unit's failure never stops
    /// the others. Returns the bytes copied and, per unit, whether it is
    /// now where the policy wants it.
    ///
    /// The batch's leases are renewed from the claim to the commit: a turn
    /// may outlast a lease (copies, re-keying, the sync, a busy catalog),
    /// and a unit waiting for the others of its batch must not be taken
    /// over meanwhile.
    pub(super) async fn move_units(&self, units: &[UnitRow]) -> Result<(u64, Vec<bool>)> {
        let Some(first) = units.first() else {
            return Ok((0, Vec::new()));
        };
        let held: Vec<(String, String)> = units
            .iter()
            .map(|u| (u.token.clone(), u.category.clone()))
            .collect();
        self.renewing(first.job, &held, self.move_held_units(units))
            .await
    }

    async fn move_held_units(&self, units: &[UnitRow]) -> Result<(u64, Vec<bool>)> {
        let mut placed = vec![false; units.len()];
        let Some(placements) = self.turn_placements(units).await? else {
            return Ok((0, placed));
        };
        // The homes of the units' subjects, read at once.
        let tokens: Vec<String> = units.iter().map(|u| u.token.clone()).collect();
        let unmarked: Vec<_> = units.iter().map(|u| (u, None)).collect();
        let subjects = self.engine.catalog.get_subjects(&tokens);
        let Some(subjects) = self.read_or_give_back(&unmarked, subjects).await? else {
            return Ok((0, placed));
        };
        // (Futures are collected before they are awaited: an iterator
        // adapter's closure held across an await makes the future lose
        // `Send` for callers that spawn it.)
        let prepared: Vec<_> = units
            .iter()
            .zip(placements)
            .zip(subjects)
            .enumerate()
            .map(|(i, ((u, p), s))| self.prepare_move(i, u, p, s))
            .collect();
        let prepared = futures::future::join_all(prepared).await;
        // The units to mark, with what their moves need.
        let mut marked = Vec::new();
        for (i, (unit, prep)) in units.iter().zip(prepared).enumerate() {
            match prep {
                Ok(Prepared::Nothing) => {
                    self.finish(unit, committed(unit, &self.owner, self.opts, 0).outcome)
                        .await?;
                    placed[i] = true;
                }
                Ok(Prepared::Move(route)) => marked.push(*route),
                Err(e) => self.give_back(unit, &e, None).await?,
            }
        }
        if marked.is_empty() {
            return Ok((0, placed));
        }
        let now = now_millis();
        let marks: Vec<MoveMark> = marked
            .iter()
            .map(|m| MoveMark {
                token: m.p.token.clone(),
                category: m.p.category.clone(),
                epoch: m.p.epoch,
                to: m.to.clone(),
            })
            .collect();
        let granted = self
            .engine
            .catalog
            .begin_moves(&marks, now + self.opts.lease.as_millis() as i64, now)
            .await?;
        let mut moving = Vec::new();
        for (m, ok) in marked.into_iter().zip(granted) {
            if ok {
                moving.push(m);
            } else {
                let unit = &units[m.unit];
                let busy = Error::Busy {
                    category: unit.category.clone(),
                };
                self.give_back(unit, &busy, None).await?;
            }
        }
        // The marked units' objects, read at once. Their placements are
        // moving: no write can commit, so these are every acknowledged
        // object.
        let keys: Vec<(String, String)> = moving
            .iter()
            .map(|m| (m.p.token.clone(), m.p.category.clone()))
            .collect();
        let with_marks: Vec<_> = moving
            .iter()
            .map(|m| (&units[m.unit], Some(&m.p)))
            .collect();
        let objects = self.engine.catalog.objects_of_pairs(&keys);
        let Some(objects) = self.read_or_give_back(&with_marks, objects).await? else {
            return Ok((0, placed));
        };
        // Every unit's copies at once; each unit's own objects a few at a time.
        let slots = tokio::sync::Semaphore::new(COPIES_PER_TURN);
        let copied: Vec<_> = moving
            .iter()
            .zip(objects)
            .map(|(m, o)| {
                let slots = &slots;
                async move {
                    match &m.new_key {
                        Some(key) => {
                            self.rekey_unit(&m.p, o, &m.to, &units[m.unit], key, slots)
                                .await
                        }
                        None => self
                            .copy_unit(&m.p, o, &m.to, &units[m.unit], slots)
                            .await
                            .map(|c| (c, Vec::new())),
                    }
                }
            })
            .collect();
        let copied = futures::future::join_all(copied).await;
        let mut ready = Vec::new();
        for (m, c) in moving.into_iter().zip(copied) {
            match c {
                Ok(c) => ready.push((m, c)),
                Err(e) => self.give_back(&units[m.unit], &e, Some(&m.p)).await?,
            }
        }
        // Nothing is committed before every new copy is durable: one sync
        // per region for the whole batch.
        let mut regions = BTreeSet::new();
        for (m, _) in &ready {
            // A re-keyed unit wrote new blobs into every region it goes to.
            let rekeyed = m.new_key.is_some();
            regions.extend(
                m.to.iter()
                    .filter(|r| rekeyed || !m.p.regions.contains(r))
                    .cloned(),
            );
        }
        let synced: Result<()> = async {
            for r in &regions {
                self.engine.region(r)?.sync().await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = synced {
            for (m, (_, rekeyed)) in &ready {
                self.discard_rekeyed(&m.p, &m.to, rekeyed).await;
            }
            let marked: Vec<_> = ready
                .iter()
                .map(|(m, _)| (&units[m.unit], Some(&m.p)))
                .collect();
            self.give_back_all(&marked, &e).await?;
            return Ok((0, placed));
        }
        let mut commits = Vec::new();
        let mut committing = Vec::new();
        for (m, (c, rekeyed)) in ready {
            match self
                .unit_move(&m, &units[m.unit], &c, rekeyed.clone())
                .await
            {
                Ok(commit) => {
                    commits.push(commit);
                    committing.push((m, c));
                }
                Err(e) => {
                    self.discard_rekeyed(&m.p, &m.to, &rekeyed).await;
                    self.give_back(&units[m.unit], &e, Some(&m.p)).await?
                }
            }
        }
        if commits.is_empty() {
            return Ok((0, placed));
        }
        let results = match self.engine.catalog.commit_unit_moves(&commits).await {
            Ok(r) => r,
            // Whether it committed is unknown: re-keyed blobs are left to
            // their write intents, never deleted here.
            Err(e) => {
                let marked: Vec<_> = committing
                    .iter()
                    .map(|(m, _)| (&units[m.unit], Some(&m.p)))
                    .collect();
                self.give_back_all(&marked, &Error::from(e)).await?;
                return Ok((0, placed));
            }
        };
        let mut bytes = 0;
        for (((m, c), r), commit) in committing.into_iter().zip(results).zip(&commits) {
            match r {
                Ok((_, held)) => {
                    self.engine.forget_keys(&units[m.unit].token);
                    placed[m.unit] = true;
                    bytes += c.moved;
                    if !held {
                        // The move committed, but the unit was no longer
                        // this worker's (its lease lapsed and a cancel took
                        // it): no purge will follow, so its old copies are
                        // queued here, due after the grace period.
                        self.queue_left_behind(&m, &c).await;
                    }
                }
                Err(e) => {
                    // Refused: this attempt's re-keyed blobs are nobody's.
                    self.discard_rekeyed(&m.p, &m.to, &commit.rekeyed).await;
                    let e = Error::from(e);
                    self.give_back(&units[m.unit], &e, Some(&m.p)).await?;
                }
            }
        }
        Ok((bytes, placed))
    }

    /// Runs `work`, renewing this worker's leases on the `held` units every third
    /// of a lease until it ends. A renewal that fails is only logged: the
    /// commit that follows is fenced by the placements' moving marks, not by
    /// the leases.
    ///
    /// `work` is polled while a renewal waits: the work's own commit may
    /// hold the unit rows a renewal must lock, and a renewal awaited in
    /// its place would wait for it for ever.
    async fn renewing<T>(
        &self,
        job: i64,
        held: &[(String, String)],
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let renewals = async {
            loop {
                tokio::time::sleep(self.opts.lease / 3).await;
                let until = now_millis() + self.opts.lease.as_millis() as i64;
                if let Err(e) = self
                    .engine
                    .catalog
                    .renew_leases(job, &self.owner, held, until)
                    .await
                {
                    tracing::warn!(error = %e, "could not renew a migration batch's leases");
                }
            }
        };
        let work = std::pin::pin!(work);
        let renewals = std::pin::pin!(renewals);
        match futures::future::select(work, renewals).await {
            futures::future::Either::Left((out, _)) => out,
            // The renewals never end; were they to, the work goes on alone.
            futures::future::Either::Right(((), work)) => work.await,
        }
    }

    /// Works out what a unit's move needs from its placement now (read for
    /// the whole batch at once) and where the policy wants it (the
    /// placement may have changed since planning: re-homing, an earlier
    /// attempt that committed). `index` is the unit's place in its batch.
    async fn prepare_move(
        &self,
        index: usize,
        unit: &UnitRow,
        placement: Option<PlacementRow>,
        subject: Option<SubjectRow>,
    ) -> Result<Prepared> {
        let Some(p) = placement else {
            return Ok(Prepared::Nothing); // erased meanwhile: nothing left to move
        };
        let subject =
            subject.ok_or_else(|| Error::NotFound("subject of a migration unit".into()))?;
        let home: Jurisdiction = subject
            .home
            .parse()
            .map_err(|_| Error::Internal("catalog holds an invalid home".into()))?;
        let current: Vec<RegionId> = p.regions.iter().filter_map(|r| r.parse().ok()).collect();
        let (to, custodian_to) = Engine::desired_placement(
            &self.acting().config,
            &unit.token,
            home,
            &unit.category,
            Some(&current),
        )?;
        let to: Vec<String> = to.iter().map(|r| r.to_string()).collect();
        let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<String>>();
        if set(&to) == set(&p.regions) && custodian_to == p.custodian && p.state.is_active() {
            return Ok(Prepared::Nothing); // already where it belongs
        }
        // A new custodian gets a fresh key of its own, never the old one
        // re-wrapped (without encryption there is no key to change).
        let new_key = if custodian_to != p.custodian && self.engine.options.encrypt {
            Some(self.new_key(&p, &custodian_to).await?)
        } else {
            None
        };
        Ok(Prepared::Move(Box::new(Route {
            unit: index,
            p,
            to,
            custodian_to,
            new_key,
        })))
    }

    /// The commit of a unit whose copies are durable: the new placement
    /// (with the data key re-wrapped if the custodian changes), its ledger
    /// receipt and the unit's release.
    async fn unit_move(
        &self,
        route: &Route,
        unit: &UnitRow,
        c: &Copied,
        rekeyed: Vec<RekeyedObject>,
    ) -> Result<UnitMove> {
        let Route {
            p,
            to,
            custodian_to,
            new_key,
            ..
        } = route;
        let now = now_millis();
        let wrapped = match new_key {
            Some(key) => key.wrapped.clone(),
            None if *custodian_to == p.custodian => p.wrapped_key.clone(),
            None => {
                // Without encryption (benchmarks only) there is no data
                // to re-key: the key is re-wrapped.
                let dek = self.engine.data_key(p).await?;
                self.engine
                    .keyring(custodian_to)
                    .await?
                    .wrap(&dek, &Engine::key_context(&p.token, &p.category))
                    .await?
            }
        };
        // The old blobs of a re-keyed unit in the regions it keeps: the
        // purge takes those in the regions it leaves; these are replaced in
        // place, so they are queued due after the longer of the job's grace
        // and the collector's (reads in flight of the old blob finish, as
        // for any overwrite).
        let kept: Vec<String> = p
            .regions
            .iter()
            .filter(|r| to.contains(r))
            .cloned()
            .collect();
        let garbage = if kept.is_empty() {
            Vec::new()
        } else {
            let grace = self.opts.grace.max(self.engine.options.gc.grace);
            let due = now + grace.as_millis() as i64;
            rekeyed
                .iter()
                .map(|o| crate::data::garbage_row(&p.token, &p.category, &o.replaces, &kept, due))
                .collect()
        };
        let ledger = LedgerAppend {
            kind: "move".into(),
            subject: Some(p.token.clone()),
            body: json!({
                "job": unit.job,
                "category": p.category,
                "from": p.regions,
                "to": to,
                "custodian_from": p.custodian,
                "custodian_to": custodian_to,
                "rekeyed": new_key.is_some(),
                "key_rewrapped": new_key.is_none() && *custodian_to != p.custodian,
                "epoch": p.epoch + 1,
                "objects": c.objects,
                "bytes": c.bytes,
                "copies_verified": c.verified,
            }),
            at: now,
            actor: crate::actor::current(),
        };
        Ok(UnitMove {
            fence: Engine::fence(&p.token, &p.category, p.epoch, self.acting().version),
            regions: to.to_vec(),
            custodian: custodian_to.to_owned(),
            wrapped_key: wrapped,
            ledger,
            release: committed(unit, &self.owner, self.opts, c.moved),
            rekeyed,
            garbage,
        })
    }

    /// Queues the blobs a committed move left in the regions it left, for
    /// a unit whose purge will not run. A failure is logged: `verify`
    /// reports what stays.
    async fn queue_left_behind(&self, m: &Route, c: &Copied) {
        let left: Vec<String> =
            m.p.regions
                .iter()
                .filter(|r| !m.to.contains(r))
                .cloned()
                .collect();
        if left.is_empty() {
            return;
        }
        let due = now_millis() + self.opts.grace.as_millis() as i64;
        let rows: Vec<_> = c
            .blobs
            .iter()
            .map(|blob| crate::data::garbage_row(&m.p.token, &m.p.category, blob, &left, due))
            .collect();
        if let Err(e) = self.engine.catalog.queue_garbage_rows(&rows).await {
            tracing::warn!(error = %e, "could not queue a moved unit's old copies");
        }
    }
}
