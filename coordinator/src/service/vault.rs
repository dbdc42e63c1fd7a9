//! After the import: verification, repair, the vault, recovery points and clean-up.

use super::*;

impl Coordinator {
    /// The repairs asked of `owner`, each with a SAS token for its import container (create
    /// and write only, for `[azure.storage] sas_ttl`).
    pub async fn repair_orders(&self, owner: &SpiffeId) -> Result<Vec<RepairOrder>> {
        let orders = self.store.repair_orders(&owner.name).await?;
        if orders.is_empty() {
            return Ok(Vec::new());
        }
        let azure = self.azure.as_ref().ok_or_else(|| {
            Error::FailedPrecondition("the coordinator has no [azure] settings: no storage to repair into".into())
        })?;
        // SAS tokens are checked by the storage service against real time, not ours.
        let wall = crate::clock::SystemClock.now_ms();
        let expires_ms = wall + azure.cfg.storage.sas_ttl.as_millis() as i64;
        let mut out = Vec::with_capacity(orders.len());
        for (seed, files) in orders {
            let sas = azure
                .accounts
                .container_sas(&seed.spec.storage_account, &seed.spec.container, "cw", expires_ms / 1000)
                .map_err(|e| {
                    Error::FailedPrecondition(format!("cannot give a SAS token for job {}: {e}", seed.spec.job_name))
                })?;
            tracing::info!(owner = %owner, job = %seed.spec.job_name, files = files.len(), "repair order handed out (container-scoped SAS, create+write)");
            out.push(RepairOrder {
                endpoint: azure.accounts.endpoint(&seed.spec.storage_account),
                seed,
                files,
                sas,
                expires_ms,
            });
        }
        Ok(out)
    }

    pub async fn report_repair(&self, owner: &SpiffeId, cmd: Cmd<RepairReport>) -> Result<Seed> {
        let idem = self.idem(owner, "ReportRepair", &cmd);
        let RepairReport { seed_id, uploaded, lost } = &cmd.body;
        let s = Self::audit(
            owner,
            "ReportRepair",
            self.store.report_repair(&idem, owner, seed_id, uploaded, lost, self.now()).await,
        )?;
        tracing::info!(owner = %owner, job = %s.spec.job_name, uploaded = uploaded.len(), lost = lost.len(), state = %s.state, "repair reported");
        Ok(s)
    }

    pub async fn verification(&self, seed: &str) -> Result<VerificationReport> {
        self.store
            .verification(seed)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no seed with id or job name {seed:?}")))
    }

    /// The caller's vault with a SAS token for it (read+list, or also create+write).
    pub async fn vault_access(&self, owner: &SpiffeId, write: bool) -> Result<VaultAccess> {
        let v = self.store.vault_of(&owner.name).await?.ok_or_else(|| {
            Error::NotFound(format!("server {} has no vault yet: its seed is not in the vault", owner.name))
        })?;
        let azure = self
            .azure
            .as_ref()
            .ok_or_else(|| Error::FailedPrecondition("the coordinator has no [azure] settings".into()))?;
        let expires_ms = crate::clock::SystemClock.now_ms() + azure.cfg.storage.sas_ttl.as_millis() as i64;
        let perms = if write { "racwl" } else { "rl" };
        // A group's members share its container: the SAS is for the container, the folder is
        // the member's own (see docs/security.md).
        let place = seedship_azure::blob::VaultPlace::parse(&v.container);
        let sas = azure
            .accounts
            .container_sas(&v.account, &place.container, perms, expires_ms / 1000)
            .map_err(|e| Error::FailedPrecondition(format!("cannot give a SAS token for the vault: {e}")))?;
        let points = self.store.recovery_points(Some(&owner.name)).await?;
        tracing::info!(server = %owner, vault = %v.container, write, "vault access handed out (container-scoped SAS)");
        Ok(VaultAccess { endpoint: azure.accounts.endpoint(&v.account), vault: v, sas, expires_ms, points })
    }

    /// Deletes the index files of `owner`'s vault that `keep` supersedes (each index holds every
    /// blob of the ones before it), once every file of `keep` is in the vault. Agents get no
    /// delete permission; this is the coordinator's. A failure is logged and left for the next
    /// incremental (the old files only cost space).
    pub async fn prune_vault_index(&self, owner: &SpiffeId, keep: &[String]) {
        let r: std::result::Result<usize, String> = async {
            let v = self.store.vault_of(&owner.name).await.map_err(|e| e.to_string())?.ok_or("no vault")?;
            let azure = self.azure.as_ref().ok_or("no [azure] settings")?;
            let store = azure.accounts.store(&v.account).map_err(|e| e.to_string())?;
            let place = seedship_azure::blob::VaultPlace::parse(&v.container);
            let dir = place.blob("index/");
            let listed = store.list(&place.container).await.map_err(|e| e.to_string())?;
            let present: Vec<&str> = listed.iter().filter_map(|b| b.name.strip_prefix(&dir)).collect();
            if let Some(missing) = keep.iter().find(|k| !present.contains(&k.as_str())) {
                return Err(format!("index file {missing} is not in the vault; nothing deleted"));
            }
            let mut deleted = 0;
            for old in present.iter().filter(|p| !keep.iter().any(|k| k == *p)) {
                store.delete(&place.container, &format!("{dir}{old}")).await.map_err(|e| e.to_string())?;
                deleted += 1;
            }
            Ok(deleted)
        }
        .await;
        match r {
            Ok(0) => {}
            Ok(n) => tracing::info!(server = %owner, deleted = n, "superseded index files deleted from the vault"),
            Err(e) => {
                tracing::warn!(server = %owner, error = %e, "the vault's old index files were not deleted; the next incremental retries")
            }
        }
    }

    /// Records an incremental the agent wrote into its own vault, once its snapshot is there
    /// and every pack it added (`packs`: name, size, MD5 hex) is there whole.
    pub async fn report_recovery_point(
        &self,
        owner: &SpiffeId,
        cmd: Cmd<String>,
        packs: &[(String, u64, String)],
    ) -> Result<RecoveryPoint> {
        let snapshot = &cmd.body;
        let v = self
            .store
            .vault_of(&owner.name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("server {} has no vault yet", owner.name)))?;
        let azure = self
            .azure
            .as_ref()
            .ok_or_else(|| Error::FailedPrecondition("the coordinator has no [azure] settings".into()))?;
        let store = azure.accounts.store(&v.account).map_err(|e| Error::Unavailable(e.to_string()))?;
        let place = seedship_azure::blob::VaultPlace::parse(&v.container);
        let name = place.blob(&format!("snapshots/{snapshot}"));
        match store.properties(&place.container, &name).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(Error::NotFound(format!(
                    "snapshot {snapshot} is not in vault {}; upload it first",
                    v.container
                )));
            }
            Err(e) => return Err(Error::Unavailable(format!("the vault cannot be read: {e}; retry"))),
        }
        for (pack, size, md5) in packs {
            let found = store
                .properties(&place.container, &place.blob(pack))
                .await
                .map_err(|e| Error::Unavailable(format!("the vault cannot be read: {e}; retry")))?;
            let whole = found
                .as_ref()
                .is_some_and(|b| b.size == *size && b.md5.as_deref().map(hex::encode).as_deref() == Some(md5.as_str()));
            if !whole {
                return Err(Error::NotFound(format!(
                    "pack {pack} of snapshot {snapshot} is not in vault {} whole ({}); upload it again, then report",
                    v.container,
                    match found {
                        None => "missing".to_string(),
                        Some(b) => format!("{} bytes, the report says {size}", b.size),
                    }
                )));
            }
        }
        let p = self.store.add_recovery_point(&owner.name, snapshot, self.now()).await?;
        tracing::info!(server = %owner, vault = %v.container, snapshot = %&snapshot[..12], "recovery point recorded (incremental)");
        Ok(p)
    }

    /// Deletes a seeded seed's files from its import container: exactly the files its verified
    /// seed manifest names (and the manifest), in the seed's own container, nothing else.
    /// Recorded with who did it.
    pub async fn cleanup_import(&self, actor: &str, seed: &str) -> Result<(Seed, u32, u64)> {
        let detail = self.store.seed_detail(seed).await?.ok_or_else(|| Error::NotFound(format!("no seed {seed:?}")))?;
        let s = detail.seed;
        if s.state != SeedState::Seeded {
            return Err(Error::FailedPrecondition(format!(
                "seed {} is {}; the import container is cleaned up only once the vault holds the seed verified (seeded)",
                s.spec.job_name, s.state
            )));
        }
        let azure = self
            .azure
            .as_ref()
            .ok_or_else(|| Error::FailedPrecondition("the coordinator has no [azure] settings".into()))?;
        // The names come from the verification, which read them from the manifest that hashes
        // to the root the source registered; none can be a blob the seed did not have.
        let report = self.store.verification(&s.seed_id).await?.ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "seed {} has no verification on record; nothing deleted",
                s.spec.job_name
            ))
        })?;
        let mut names: Vec<String> = report.files.iter().map(|f| f.path.clone()).collect();
        if let Some(bad) = names.iter().find(|p| seedship_repo::manifest::check_path(p).is_err()) {
            return Err(Error::FailedPrecondition(format!(
                "the verified manifest of seed {} names {bad:?}, which is no staging file; nothing deleted",
                s.spec.job_name
            )));
        }
        names.push(crate::workers::verifier::MANIFEST_BLOB.to_string());
        let store = azure.accounts.store(&s.spec.storage_account).map_err(|e| Error::Unavailable(e.to_string()))?;
        let (mut n, mut bytes) = (0u32, 0u64);
        for name in &names {
            let size = match store.properties(&s.spec.container, name).await {
                Ok(Some(b)) => b.size,
                Ok(None) => continue,
                Err(e) => return Err(Error::Unavailable(format!("{name}: {e}; retry"))),
            };
            store
                .delete(&s.spec.container, name)
                .await
                .map_err(|e| Error::Unavailable(format!("{name}: {e}; retry")))?;
            n += 1;
            bytes += size;
        }
        let reason = format!(
            "import container {}/{} cleaned up: {n} blob(s), {bytes} bytes deleted (the vault holds the seed)",
            s.spec.storage_account, s.spec.container
        );
        let s = self.store.record_cleanup(&s.seed_id, None, actor, "import_cleaned_up", &reason, self.now()).await?;
        tracing::info!(actor, job = %s.spec.job_name, blobs = n, bytes, "import container cleaned up");
        Ok((s, n, bytes))
    }

    pub async fn staging_deleted(&self, owner: &SpiffeId, seed_id: &str, bytes: u64) -> Result<Seed> {
        let reason = format!("staging location deleted by its source agent ({bytes} bytes); the vault holds the seed");
        let s = Self::audit(
            owner,
            "ReportStagingDeleted",
            self.store
                .record_cleanup(seed_id, Some(&owner.name), &owner.uri(), "staging_deleted", &reason, self.now())
                .await,
        )?;
        tracing::info!(owner = %owner, job = %s.spec.job_name, bytes, "staging location deleted");
        Ok(s)
    }

    pub async fn recovery_points(&self, server: Option<&str>) -> Result<Vec<RecoveryPoint>> {
        self.store.recovery_points(server).await
    }

    // ---- the verifier's and the vaulter's steps.

    /// `imported` (or `needs_repair` with every file back) → `verifying`.
    pub async fn start_verification(&self, seed_id: &str) -> Result<Seed> {
        self.store.start_verification(seed_id, self.now()).await
    }

    /// A round of lost files is imported: it is merged into its parent, which is verified again.
    pub async fn merge_round(&self, round_id: &str) -> Result<Seed> {
        self.store.merge_round(round_id, self.now()).await
    }

    /// After a partial loss, a new offline round for exactly the files that are lost.
    pub async fn reship_lost(&self, operator: &SpiffeId, cmd: Cmd<(String, String)>) -> Result<Reshipped> {
        let idem = self.idem(operator, "ReshipLost", &cmd);
        let (seed, reason) = &cmd.body;
        let r = self.store.reship_lost(&idem, operator, seed, reason, self.now()).await?;
        tracing::info!(
            operator = %operator,
            job = %r.seed.spec.job_name,
            round = %r.round.spec.job_name,
            files = r.files,
            bytes = r.bytes,
            %reason,
            "new offline round for the files the import lost"
        );
        Ok(r)
    }

    /// A verification's findings: passed → `seeding_vault`; otherwise `needs_repair`.
    pub async fn finish_verification(
        &self,
        seed_id: &str,
        files: &[VerifiedFile],
        repair: &[RepairFile],
    ) -> Result<Seed> {
        self.store.finish_verification(seed_id, files, repair, self.now()).await
    }

    pub async fn fail_seed(&self, seed_id: &str, actor: &str, reason: &str) -> Result<Seed> {
        self.store.fail_seed(seed_id, actor, reason, self.now()).await
    }

    /// The seed's data is in the vault, with its snapshots as recovery points.
    pub async fn vault_seeded(
        &self,
        seed_id: &str,
        account: &str,
        container: &str,
        snapshots: &[String],
    ) -> Result<Seed> {
        self.store.vault_seeded(seed_id, account, container, snapshots, self.now()).await
    }
}
