//! Agents, seeds and disk-prep leases.

use super::*;

/// How long the drive manifest's SAS is valid: shipping, up to 14 days' wait, the copy.
pub const MANIFEST_SAS_DAYS: i64 = 60;

impl Coordinator {
    pub async fn register_agent(&self, who: &SpiffeId, cmd: Cmd<AgentInfo>) -> Result<Agent> {
        let idem = self.idem(who, "RegisterAgent", &cmd);
        let agent = self.store.register_agent(&idem, who, &cmd.body, self.now()).await?;
        tracing::info!(agent = %who, site = ?cmd.body.site, "agent registered");
        Ok(agent)
    }

    pub async fn heartbeat(&self, who: &SpiffeId, cmd: Cmd<String>) -> Result<UnixMs> {
        let idem = self.idem(who, "Heartbeat", &cmd);
        self.store.heartbeat(&idem, who, &cmd.body, self.now()).await
    }

    pub async fn register_seed(&self, owner: &SpiffeId, cmd: Cmd<NewSeed>) -> Result<SeedRegistration> {
        let idem = self.idem(owner, "RegisterSeed", &cmd);
        let reg = Self::audit(
            owner,
            "RegisterSeed",
            self.store
                .register_seed(&idem, owner, &cmd.body, &self.placement, self.disk_kind_policy(), self.now())
                .await,
        )?;
        if reg.created {
            tracing::info!(seed = %reg.seed.seed_id, job = %reg.seed.spec.job_name, owner = %owner, container = %reg.seed.spec.container, kind = %reg.seed.kind, "seed registered");
        }
        self.warm_address(&reg.seed.spec.subscription_id, &reg.seed.spec.location);
        Ok(reg)
    }

    /// Customer disks: a SAS for the seed's import container, create and write only, valid
    /// [`MANIFEST_SAS_DAYS`], for the drive manifest's `ContainerSas`. `None` (and a warning)
    /// when it cannot be made; never logged.
    fn manifest_sas(&self, seed: &Seed) -> Option<SasToken> {
        if seed.kind != DiskKind::CustomerDisk {
            return None;
        }
        // Checked by the storage service against real time, not the coordinator's clock.
        let expires = crate::clock::SystemClock.now_ms() / 1000 + MANIFEST_SAS_DAYS * 86_400;
        let signers = [self.azure.as_ref().map(|a| &a.accounts), self.signer.as_ref()];
        let mut why = String::from("no storage account key is configured ([azure.storage] or [imports] keys_file)");
        for accounts in signers.into_iter().flatten() {
            match accounts.container_sas(&seed.spec.storage_account, &seed.spec.container, "cw", expires) {
                Ok(sas) => return Some(SasToken(sas)),
                Err(e) => why = e.to_string(),
            }
        }
        tracing::warn!(job = %seed.spec.job_name, reason = %why, "no SAS for the drive manifest; a station cannot prepare customer disks for this seed");
        None
    }

    /// What new seeds are shipped on: `[azure] disk_kind` (customer disks without `[azure]`).
    fn disk_kind_policy(&self) -> DiskKind {
        self.azure.as_ref().map(|a| a.cfg.disk_kind).unwrap_or_default()
    }

    pub async fn own_seeds(&self, owner: &SpiffeId) -> Result<Vec<Seed>> {
        self.store.list_own_seeds(&owner.name).await
    }

    pub async fn claim(&self, station: &SpiffeId, cmd: Cmd<()>) -> Result<Option<Lease>> {
        let idem = self.idem(station, "ClaimWork", &cmd);
        let mut lease = self.store.claim_work(&idem, station, self.timing()).await?;
        if let Some(l) = &mut lease {
            tracing::info!(station = %station, work = %l.work.work_id, job = %l.seed.spec.job_name, generation = l.work.generation, "lease granted");
            self.warm_address(&l.seed.spec.subscription_id, &l.seed.spec.location);
            l.container_sas = self.manifest_sas(&l.seed);
        }
        Ok(lease)
    }

    /// Renews a lease; `waiting` (non-empty) says what the station waits for.
    pub async fn renew(&self, station: &SpiffeId, cmd: Cmd<(Fence, String)>) -> Result<UnixMs> {
        let idem = self.idem(station, "RenewLease", &cmd);
        let (fence, waiting) = &cmd.body;
        Self::audit(station, "RenewLease", self.store.renew_lease(&idem, station, fence, waiting, self.timing()).await)
    }

    pub async fn progress(&self, station: &SpiffeId, cmd: Cmd<(Fence, ProgressDelta)>) -> Result<(u64, UnixMs)> {
        let idem = self.idem(station, "ReportProgress", &cmd);
        let (fence, delta) = &cmd.body;
        Self::audit(
            station,
            "ReportProgress",
            self.store.report_progress(&idem, station, fence, delta, self.timing()).await,
        )
    }

    /// Keeps the disks' progress a station reported with a renewal (best effort: the
    /// renewal itself has landed; a failure here only leaves the central view a tick behind).
    pub async fn record_disks(&self, station: &SpiffeId, fence: &Fence, disks: Vec<DiskProgress>) {
        if disks.is_empty() {
            return;
        }
        if let Err(e) = self.store.record_disks(station, fence, disks, self.now()).await {
            tracing::debug!(station = %station, error = %e, "disk progress not recorded");
        }
    }

    /// Audit entries after `after`, oldest first (only `target`'s when given).
    pub async fn audit_list(
        &self,
        after: i64,
        limit: u32,
        target: Option<&str>,
    ) -> Result<Vec<seedship_proto::audit::Entry>> {
        self.store.audit_list(after, limit, target).await
    }

    /// A single-use login link's secret for `operator`, valid `ttl`; only its hash is kept.
    pub async fn create_login(&self, operator: &SpiffeId, ttl: std::time::Duration) -> Result<(String, UnixMs)> {
        let token = random_secret();
        let expires = self.now() + ttl.as_millis() as i64;
        self.store.web_create_login(&secret_hash(&token), &operator.uri(), self.now(), expires).await?;
        Ok((token, expires))
    }

    /// Uses a login link: the new session's secret and its operator.
    pub async fn redeem_login(&self, token: &str) -> Result<(String, String)> {
        let session = random_secret();
        let who = self.store.web_redeem(&secret_hash(token), &secret_hash(&session), self.now(), 8 * 3_600_000).await?;
        Ok((session, who))
    }

    /// The operator of a dashboard session.
    pub async fn web_session(&self, session: &str) -> Result<Option<String>> {
        self.store.web_session(&secret_hash(session), self.now()).await
    }

    pub async fn web_change_token(&self) -> Result<String> {
        self.store.web_change_token().await
    }

    /// One round of a notification channel: its new notifications queued, the due ones sent.
    pub async fn notify_round(&self, ch: &crate::notify::Channel, external_url: &str) -> Result<()> {
        self.store.notify_enqueue(ch.name(), ch.kinds().to_vec(), self.now()).await?;
        for (n, attempts) in self.store.notify_due(ch.name(), self.now(), 20).await? {
            let outcome = ch.send(&n, external_url).await;
            match &outcome {
                Ok(()) => {
                    tracing::info!(channel = ch.name(), notification = n.id, kind = n.kind.as_str(), job = %n.job_name, "notification delivered")
                }
                Err(e) => {
                    tracing::warn!(channel = ch.name(), notification = n.id, attempt = attempts + 1, error = %e, "notification not delivered; retrying")
                }
            }
            self.store.notify_attempted(n.id, ch.name(), outcome, self.now()).await?;
        }
        Ok(())
    }

    /// Notifications with their deliveries, newest first.
    pub async fn notifications(&self, open: bool, limit: u32) -> Result<Vec<crate::store::ops::NotificationListed>> {
        self.store.notify_list(open, limit).await
    }

    /// An operator acknowledges a notification.
    pub async fn ack_notification(
        &self,
        operator: &SpiffeId,
        id: i64,
        reason: &str,
    ) -> Result<crate::domain::notify::Notification> {
        self.store.notify_ack(id, &operator.uri(), reason, self.now()).await
    }

    /// The newest audit entry's sequence number (0 for an empty log).
    pub async fn audit_list_head(&self) -> Result<i64> {
        self.store.audit_head().await
    }

    /// Links the audit entries recorded since the last time into the chain, a batch per
    /// transaction (so no one transaction runs long): how many joined.
    pub async fn chain_audit(&self) -> Result<u64> {
        let mut joined = 0;
        loop {
            let n = self.store.chain_audit().await?;
            joined += n;
            if n < crate::store::ops::AUDIT_CHAIN_BATCH as u64 {
                return Ok(joined);
            }
        }
    }

    /// Records what a caller was refused (in its own transaction: nothing else was written).
    pub async fn audit_refusal(&self, actor: &str, action: &str, outcome: &str, detail: &str) {
        let r = AuditRecord {
            actor: actor.to_string(),
            action: action.to_string(),
            target: String::new(),
            outcome: outcome.to_string(),
            detail: detail.chars().take(500).collect(),
        };
        if let Err(e) = self.store.audit(r, self.now()).await {
            tracing::warn!(error = %e, action, "a refusal could not be written to the audit log");
        }
    }

    /// Each station's write rate now (bytes/s).
    pub async fn station_rates(&self) -> Result<Vec<(String, u64)>> {
        self.store.station_rates().await
    }

    /// The durable facts `/metrics` counts, and the import jobs followed now.
    pub async fn metrics_facts(&self) -> Result<(MetricsFacts, Vec<crate::domain::import::JobRecord>)> {
        Ok((self.store.metrics_facts().await?, self.store.followed_jobs().await?))
    }

    /// How long without a heartbeat before an agent counts as gone: three intervals.
    pub fn gone_after_ms(&self) -> i64 {
        3 * self.settings().heartbeat_interval.as_millis() as i64
    }

    pub async fn report_drive(
        &self,
        station: &SpiffeId,
        request_id: String,
        fence: Fence,
        drive: DriveReport,
    ) -> Result<Drive> {
        let sealed = match (&drive.recovery_password, &self.master_key) {
            (None, _) => None,
            (Some(pw), Some(mk)) => Some((mk.seal(&fence.work_id, &drive.spec.drive_id, pw)?, mk.fingerprint(&pw.0))),
            (Some(_), None) => {
                return Err(Error::FailedPrecondition(
                    "the coordinator has no master_key_file configured, so it cannot store drive keys; configure one and retry".into(),
                ));
            }
        };
        // The fingerprint covers the key only through a keyed hash, never the key itself.
        let cmd = Cmd { request_id, body: (&fence, &drive.spec, sealed.as_ref().map(|(_, fp)| fp.clone())) };
        let idem = self.idem(station, "ReportDrive", &cmd);
        let out = Self::audit(
            station,
            "ReportDrive",
            self.store.report_drive(&idem, station, &fence, &drive.spec, sealed.map(|(k, _)| k), self.now()).await,
        )?;
        tracing::info!(station = %station, work = %fence.work_id, drive = %drive.spec.drive_id, "drive reported");
        Ok(out)
    }

    /// A drive's recovery password, back to the station that reported it (see the RPC).
    pub async fn drive_key(&self, station: &SpiffeId, fence: &Fence, drive_id: &str) -> Result<RecoveryPassword> {
        let mk = self.master_key.as_ref().ok_or_else(|| {
            Error::FailedPrecondition(
                "the coordinator has no master_key_file configured, so it holds no drive keys".into(),
            )
        })?;
        let sealed =
            Self::audit(station, "GetDriveKey", self.store.drive_key(station, fence, drive_id, self.now()).await)?;
        let key = mk.open(&fence.work_id, drive_id, &sealed)?;
        // On the record before the key leaves: no release without its audit entry.
        self.store
            .audit(
                AuditRecord {
                    actor: station.uri(),
                    action: "drive_key_released".into(),
                    target: fence.work_id.clone(),
                    outcome: "ok".into(),
                    detail: format!(
                        "the recovery password of drive {drive_id} to its lease holder (generation {})",
                        fence.generation
                    ),
                },
                self.now(),
            )
            .await?;
        tracing::info!(station = %station, work = %fence.work_id, drive = %drive_id, "drive key released to its lease holder");
        Ok(key)
    }

    pub async fn complete(&self, station: &SpiffeId, cmd: Cmd<Fence>) -> Result<Seed> {
        let idem = self.idem(station, "CompleteWork", &cmd);
        let seed = Self::audit(
            station,
            "CompleteWork",
            self.store.complete_work(&idem, station, &cmd.body, self.now()).await,
        )?;
        tracing::info!(station = %station, job = %seed.spec.job_name, "disk preparation complete");
        Ok(seed)
    }

    pub async fn release(&self, station: &SpiffeId, cmd: Cmd<(Fence, String, bool)>) -> Result<()> {
        let idem = self.idem(station, "ReleaseWork", &cmd);
        let (fence, reason, invalid) = &cmd.body;
        let release = crate::domain::lease::Release {
            reason: reason.clone(),
            staging_invalid: *invalid,
            backoff: self.settings.release_backoff,
        };
        Self::audit(
            station,
            "ReleaseWork",
            self.store.release_work(&idem, station, fence, &release, self.now()).await,
        )?;
        if *invalid {
            tracing::warn!(station = %station, work = %fence.work_id, %reason, "staging set refused; seed failed");
        } else {
            tracing::info!(station = %station, work = %fence.work_id, %reason, "lease released");
        }
        Ok(())
    }

    /// Returns expired leases to the queue; the sweeper calls this.
    pub async fn expire_leases(&self) -> Result<Vec<ExpiredLease>> {
        let expired = self.store.expire_leases(self.now()).await?;
        for e in &expired {
            tracing::warn!(work = %e.work_id, seed = %e.seed_id, holder = %e.holder, generation = e.generation, "lease expired; work returned to the queue");
        }
        Ok(expired)
    }

    pub async fn purge_requests(&self, keep: Duration) -> Result<u64> {
        self.store.purge_requests(self.now() - keep.as_millis() as i64).await
    }

    pub async fn allow_virtual_station(&self, operator: &SpiffeId, cmd: Cmd<(String, String)>) -> Result<Seed> {
        let idem = self.idem(operator, "AllowVirtualStation", &cmd);
        let (seed, reason) = &cmd.body;
        let s = self.store.allow_virtual_station(&idem, operator, seed, reason, self.now()).await?;
        tracing::info!(operator = %operator, job = %s.spec.job_name, %reason, "virtual copy station allowed for this seed");
        Ok(s)
    }

    /// Puts held disk-prep work back in the queue (see the RPC).
    pub async fn retry_work(&self, operator: &SpiffeId, cmd: Cmd<(String, String)>) -> Result<Seed> {
        let idem = self.idem(operator, "RetryWork", &cmd);
        let (seed, reason) = &cmd.body;
        let s = self.store.retry_work(&idem, operator, seed, reason, self.now()).await?;
        tracing::info!(operator = %operator, job = %s.spec.job_name, %reason, state = s.state.as_str(), "failed step retried");
        Ok(s)
    }

    pub async fn requeue_work(
        &self,
        operator: &SpiffeId,
        cmd: Cmd<(String, crate::store::ops::Retarget, String)>,
    ) -> Result<Seed> {
        let idem = self.idem(operator, "RequeueWork", &cmd);
        let (seed, to, reason) = &cmd.body;
        let s = self.store.requeue_work(&idem, operator, seed, to, reason, self.now()).await?;
        tracing::info!(operator = %operator, job = %s.spec.job_name, %reason, "disk-prep work re-queued");
        Ok(s)
    }

    pub async fn list_seeds(&self, state: Option<SeedState>, limit: u32) -> Result<Vec<Seed>> {
        self.store.list_seeds(state, limit).await
    }

    pub async fn seed_detail(&self, seed: &str) -> Result<SeedDetail> {
        self.store
            .seed_detail(seed)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no seed with id or job name {seed:?}")))
    }

    pub async fn list_drives(&self, seed: Option<&str>) -> Result<Vec<Drive>> {
        self.store.list_drives(seed).await
    }

    pub async fn list_agents(&self, role: Option<Role>) -> Result<Vec<Agent>> {
        self.store.list_agents(role).await
    }

    pub async fn list_events(&self, seed: Option<&str>, limit: u32, before: i64) -> Result<Vec<HistoryEntry>> {
        self.store.list_events(seed, limit, before).await
    }
}

/// 32 random bytes, hex: a login link's or a session's secret.
pub(crate) fn random_secret() -> String {
    let mut b = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).expect("the system's random source");
    hex::encode(b)
}

/// What is stored of a secret.
pub(crate) fn secret_hash(s: &str) -> String {
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}
